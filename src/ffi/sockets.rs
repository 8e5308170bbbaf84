//! One core's descriptors: the table behind the C API's small-integer
//! sockets and epoll instances, the socket calls with their errno results,
//! and epoll readiness as Linux's `tcp_poll` reports it.
//!
//! Owns: descriptor allocation and validation, the state the C API keeps
//! beside each [`SocketHandle`] (local shutdowns, an error held back for
//! `recv`/`SO_ERROR`, keepalive parameters, epoll registrations), and epoll
//! instances. Never: touches raw pointers (the exported functions in
//! `super` turn them into slices and addresses first), or blocks.
//!
//! A descriptor is a non-negative `int`: bits 0..20 are the slot, 20..26 the
//! core, 26..31 the slot's generation. Slot 0 is never used, so 0 is never a
//! descriptor. Freed slots are reused oldest first and their generation is
//! bumped, so a closed, stale or foreign descriptor is EBADF — unless the
//! same slot has since been reused 32 times, which takes a whole free list's
//! turnover 32 times over.

use core::net::SocketAddrV4;
use std::collections::VecDeque;

use libc::c_int;

use crate::api::{Shutdown, SocketError, SocketHandle, Stack, State};
use crate::tcp::Keepalive;
use crate::time::{Duration, Instant};

pub type Errno = c_int;
pub type Res<T> = Result<T, Errno>;

const INDEX_BITS: u32 = 20;
const CORE_BITS: u32 = 6;
const GEN_BITS: u32 = 5;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
const CORE_MASK: u32 = (1 << CORE_BITS) - 1;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;
/// Descriptors one core may hold at once (sockets and epoll instances).
pub(crate) const MAX_DESCRIPTORS: usize = (1 << INDEX_BITS) - 1;

const _: () = assert!(INDEX_BITS + CORE_BITS + GEN_BITS == 31);
const _: () = assert!(1 << CORE_BITS == super::config::MAX_CORES);

/// epoll event bits this layer computes or understands.
const EPOLLIN: u32 = libc::EPOLLIN as u32;
const EPOLLPRI: u32 = libc::EPOLLPRI as u32;
const EPOLLOUT: u32 = libc::EPOLLOUT as u32;
const EPOLLERR: u32 = libc::EPOLLERR as u32;
const EPOLLHUP: u32 = libc::EPOLLHUP as u32;
const EPOLLRDHUP: u32 = libc::EPOLLRDHUP as u32;
const EPOLLET: u32 = libc::EPOLLET as u32;
const EPOLLONESHOT: u32 = libc::EPOLLONESHOT as u32;

/// The errno each socket error becomes.
pub fn errno_of(e: SocketError) -> Errno {
    match e {
        SocketError::BadHandle => libc::EBADF,
        SocketError::InvalidState => libc::EINVAL,
        SocketError::WouldBlock => libc::EAGAIN,
        SocketError::InProgress => libc::EALREADY,
        SocketError::AlreadyConnected => libc::EISCONN,
        SocketError::NotConnected => libc::ENOTCONN,
        SocketError::AddrInUse => libc::EADDRINUSE,
        SocketError::AddrNotAvailable => libc::EADDRNOTAVAIL,
        SocketError::Pipe => libc::EPIPE,
        SocketError::Refused => libc::ECONNREFUSED,
        SocketError::Reset => libc::ECONNRESET,
        SocketError::TimedOut => libc::ETIMEDOUT,
        SocketError::NoResources => libc::ENOBUFS,
    }
}

/// What the C API keeps beside a socket handle.
struct Sock {
    h: SocketHandle,
    /// connect() was called or the socket came from accept(): a TCP
    /// connection (in any state), not a fresh, bound or listening socket.
    connection: bool,
    shut_rd: bool,
    shut_wr: bool,
    /// A connection reset that send() reported as EPIPE: still owed to
    /// recv() and SO_ERROR (as ECONNRESET).
    held: Option<SocketError>,
    keepalive_on: bool,
    /// TCP_KEEPIDLE/INTVL/CNT, kept while SO_KEEPALIVE is off.
    keepalive: Keepalive,
    reuse_port: bool,
    /// The epoll instances this socket is in: (instance, the index of its
    /// registration in the instance's `regs`).
    epolls: Vec<(u32, u32)>,
}

enum Obj {
    Free,
    Sock(Sock),
    /// Index into `CoreState::epolls`.
    Epoll(u32),
}

struct Entry {
    gen: u32,
    obj: Obj,
}

/// One registration in an epoll instance.
struct Reg {
    slot: u32,
    events: u32,
    data: u64,
    /// Readiness when last looked at (edge-triggered: what is not new).
    last: u32,
    /// EPOLLONESHOT: reported once, silent until EPOLL_CTL_MOD.
    armed: bool,
    /// In the instance's `check` list, under `ticket`.
    queued: bool,
    /// The ticket of its latest entry in `check`; older entries are stale.
    ticket: u32,
}

/// An epoll instance: its registrations and, as Linux's ready list, the
/// ones to look at on the next wait. A wait looks only at those, so it
/// costs what is ready or changed, not what is registered: a server with
/// ten thousand idle connections pays nothing for them.
#[derive(Default)]
struct Epoll {
    regs: Vec<Reg>,
    /// The registrations to look at, in order, as (index in `regs`,
    /// ticket): those whose socket was touched since (by a segment, a timer
    /// or a call), and level-triggered ones still ready, which go to the
    /// back once reported so that many ready sockets take turns when
    /// `maxevents` is small (as Linux does). An entry whose registration
    /// was removed or moved since is stale (its ticket no longer matches)
    /// and skipped, so removing a registration costs O(1), as on Linux.
    check: VecDeque<(u32, u32)>,
    /// The next ticket.
    tickets: u32,
}

/// One event for `epoll_wait`'s array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub events: u32,
    pub data: u64,
}

/// The descriptors of one core.
pub struct CoreState {
    core: u32,
    entries: Vec<Entry>,
    free: VecDeque<u32>,
    epolls: Vec<Option<Epoll>>,
    epolls_free: Vec<u32>,
    /// The stack's socket index → the slot of its descriptor here (0:
    /// none), to turn the stack's wake log into registrations to check.
    by_index: Vec<u32>,
}

/// A core's descriptors together with its stack, for one call.
pub struct Core<'a> {
    pub st: &'a mut CoreState,
    pub stack: &'a mut Stack,
    pub now: Instant,
}

impl CoreState {
    pub fn new(core: usize) -> CoreState {
        assert!(core < super::config::MAX_CORES);
        CoreState {
            core: core as u32,
            // Slot 0 is a placeholder so that no descriptor is 0.
            entries: vec![Entry {
                gen: 0,
                obj: Obj::Free,
            }],
            free: VecDeque::new(),
            epolls: Vec::new(),
            epolls_free: Vec::new(),
            by_index: Vec::new(),
        }
    }

    pub fn core(&self) -> usize {
        self.core as usize
    }

    fn fd_of(&self, slot: u32) -> c_int {
        let gen = self.entries[slot as usize].gen;
        ((gen << (INDEX_BITS + CORE_BITS)) | (self.core << INDEX_BITS) | slot) as c_int
    }

    /// The slot of a live descriptor of this core.
    fn slot(&self, fd: c_int) -> Res<u32> {
        if fd <= 0 {
            return Err(libc::EBADF);
        }
        let fd = fd as u32;
        let slot = fd & INDEX_MASK;
        let core = (fd >> INDEX_BITS) & CORE_MASK;
        let gen = (fd >> (INDEX_BITS + CORE_BITS)) & GEN_MASK;
        match self.entries.get(slot as usize) {
            Some(e) if slot != 0 && core == self.core && e.gen == gen => match e.obj {
                Obj::Free => Err(libc::EBADF),
                _ => Ok(slot),
            },
            _ => Err(libc::EBADF),
        }
    }

    fn alloc(&mut self, obj: Obj) -> Res<u32> {
        let slot = match self.free.pop_front() {
            Some(s) => s,
            None if self.entries.len() <= MAX_DESCRIPTORS => {
                self.entries.push(Entry {
                    gen: 0,
                    obj: Obj::Free,
                });
                (self.entries.len() - 1) as u32
            }
            None => return Err(libc::EMFILE),
        };
        self.entries[slot as usize].obj = obj;
        Ok(slot)
    }

    /// A socket's descriptor, known by the stack's socket index.
    fn alloc_sock(&mut self, sock: Sock) -> Res<u32> {
        let index = sock.h.index() as usize;
        let slot = self.alloc(Obj::Sock(sock))?;
        if self.by_index.len() <= index {
            self.by_index.resize(index + 1, 0);
        }
        self.by_index[index] = slot;
        Ok(slot)
    }

    /// The socket at `slot` may have changed readiness: each of its
    /// registrations is looked at on its instance's next wait.
    fn mark(&mut self, slot: u32) {
        let CoreState {
            entries, epolls, ..
        } = self;
        let Some(Entry {
            obj: Obj::Sock(s), ..
        }) = entries.get(slot as usize)
        else {
            return;
        };
        for &(e, i) in &s.epolls {
            if let Some(Some(ep)) = epolls.get_mut(e as usize) {
                ep.mark(i as usize);
            }
        }
    }

    /// Takes registration `i` out of instance `e`; the registration moved
    /// into its place learns its new index.
    fn unregister(&mut self, e: u32, i: u32) {
        let Some(Some(ep)) = self.epolls.get_mut(e as usize) else {
            return;
        };
        if let Some(moved) = ep.remove(i as usize) {
            if let Obj::Sock(s) = &mut self.entries[moved as usize].obj {
                for r in s.epolls.iter_mut().filter(|r| r.0 == e) {
                    r.1 = i;
                }
            }
        }
    }

    fn release(&mut self, slot: u32) {
        let e = &mut self.entries[slot as usize];
        e.obj = Obj::Free;
        e.gen = (e.gen + 1) & GEN_MASK;
        self.free.push_back(slot);
    }

    fn sock(&self, fd: c_int) -> Res<(u32, &Sock)> {
        let slot = self.slot(fd)?;
        match &self.entries[slot as usize].obj {
            Obj::Sock(s) => Ok((slot, s)),
            // An epoll descriptor is not a socket (Linux: ENOTSOCK).
            _ => Err(libc::ENOTSOCK),
        }
    }

    fn sock_mut(&mut self, fd: c_int) -> Res<&mut Sock> {
        let slot = self.slot(fd)?;
        match &mut self.entries[slot as usize].obj {
            Obj::Sock(s) => Ok(s),
            _ => Err(libc::ENOTSOCK),
        }
    }

    fn handle(&self, fd: c_int) -> Res<SocketHandle> {
        Ok(self.sock(fd)?.1.h)
    }

    /// Every socket handle still open (for the core's last iteration).
    pub fn open_handles(&self) -> Vec<SocketHandle> {
        self.entries
            .iter()
            .filter_map(|e| match &e.obj {
                Obj::Sock(s) => Some(s.h),
                _ => None,
            })
            .collect()
    }
}

/// The events Linux's `tcp_poll` reports for a socket in this state.
fn readiness(stack: &Stack, s: &Sock) -> u32 {
    let (Ok(r), Ok(state)) = (stack.tcp.readiness(s.h), stack.tcp.state(s.h)) else {
        return EPOLLERR | EPOLLHUP;
    };
    if state == State::Listen {
        return if r.readable { EPOLLIN } else { 0 };
    }
    if !s.connection {
        // A fresh or bound socket is CLOSED: writable and hung up.
        return EPOLLOUT | EPOLLHUP;
    }
    let closed = state == State::Closed;
    let peer_fin = matches!(
        state,
        State::CloseWait | State::Closing | State::LastAck | State::TimeWait
    );
    // RCV_SHUTDOWN / SEND_SHUTDOWN in Linux's terms (tcp_done sets both).
    let rcv_shut = closed || peer_fin || s.shut_rd;
    let snd_shut = closed
        || s.shut_wr
        || matches!(
            state,
            State::FinWait1 | State::FinWait2 | State::Closing | State::LastAck | State::TimeWait
        );
    let mut m = 0;
    if rcv_shut {
        m |= EPOLLIN | EPOLLRDHUP;
    }
    if !matches!(state, State::SynSent | State::SynReceived) {
        if r.readable {
            m |= EPOLLIN;
        }
        // After SEND_SHUTDOWN Linux reports EPOLLOUT so a writer learns of
        // the error (EPIPE) instead of waiting forever.
        if snd_shut || r.writable {
            m |= EPOLLOUT;
        }
    }
    if r.error || s.held.is_some() {
        m |= EPOLLERR;
    }
    if closed || (rcv_shut && snd_shut) {
        m |= EPOLLHUP;
    }
    m
}

/// Linux's numbering of TCP states (include/net/tcp_states.h).
fn linux_state(s: State) -> u8 {
    match s {
        State::Established => 1,
        State::SynSent => 2,
        State::SynReceived => 3,
        State::FinWait1 => 4,
        State::FinWait2 => 5,
        State::TimeWait => 6,
        State::Closed => 7,
        State::CloseWait => 8,
        State::LastAck => 9,
        State::Listen => 10,
        State::Closing => 11,
    }
}

fn secs_option(v: c_int, max: c_int) -> Res<Duration> {
    if !(1..=max).contains(&v) {
        return Err(libc::EINVAL);
    }
    Ok(Duration::from_secs(v as u64))
}

fn int_of(val: &[u8]) -> Res<c_int> {
    let b: [u8; 4] = val
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(libc::EINVAL)?;
    Ok(c_int::from_ne_bytes(b))
}

fn int_bytes(v: c_int) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// Writes `v` at `off` in a C struct's bytes.
fn put<const N: usize>(buf: &mut [u8], off: usize, v: [u8; N]) {
    buf[off..off + N].copy_from_slice(&v);
}

impl Core<'_> {
    /// Validates `fd` before any pointer argument is looked at, so a bad
    /// descriptor is EBADF whatever else is wrong (as in the kernel).
    pub fn check_sock(&self, fd: c_int) -> Res<()> {
        self.st.sock(fd).map(drop)
    }

    /// Turns the stack's wake log into registrations to look at. The log
    /// holds every socket that may have become more ready: the stack logs
    /// whatever a segment, a timer, a dispatch or one of its calls touched,
    /// and every call here that changes what this layer keeps beside a
    /// socket (a shutdown, connect, listen) goes through such a stack call.
    /// What a call takes away (data read, an error reported) needs no
    /// look, as a look only adds events; edge-triggered registrations
    /// forget it through [`consumed`](Self::consumed).
    fn collect_wakes(&mut self) {
        let st = &mut *self.st;
        self.stack.tcp.take_woken(|h| {
            let slot = st.by_index.get(h.index() as usize).copied().unwrap_or(0);
            if let Some(Entry {
                obj: Obj::Sock(s), ..
            }) = st.entries.get(slot as usize)
            {
                if slot != 0 && s.h == h {
                    st.mark(slot);
                }
            }
        });
    }

    /// After a call that may have consumed readiness (a read, a write, an
    /// accept): an edge-triggered registration forgets the bits that are
    /// gone, so their return counts as new.
    fn consumed(&mut self, slot: u32) {
        let CoreState {
            entries, epolls, ..
        } = &mut *self.st;
        let Obj::Sock(s) = &entries[slot as usize].obj else {
            return;
        };
        if s.epolls.is_empty() {
            return;
        }
        let now = readiness(self.stack, s);
        for &(e, i) in &s.epolls {
            if let Some(Some(ep)) = epolls.get_mut(e as usize) {
                ep.regs[i as usize].last &= now;
            }
        }
    }

    // ----- sockets ----------------------------------------------------------

    pub fn socket(&mut self, domain: c_int, ty: c_int, protocol: c_int) -> Res<c_int> {
        if domain != libc::AF_INET {
            return Err(libc::EAFNOSUPPORT);
        }
        // Every socket is non-blocking and has no exec to survive.
        let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        if base != libc::SOCK_STREAM {
            return Err(if (0..=10).contains(&base) {
                libc::EPROTONOSUPPORT
            } else {
                libc::EINVAL
            });
        }
        if protocol != 0 && protocol != libc::IPPROTO_TCP {
            return Err(libc::EPROTONOSUPPORT);
        }
        let h = self.stack.tcp.socket().map_err(|e| match e {
            SocketError::NoResources => libc::EMFILE,
            e => errno_of(e),
        })?;
        let keepalive = self.stack.tcp.config().tcp.keepalive;
        let sock = Sock {
            h,
            connection: false,
            shut_rd: false,
            shut_wr: false,
            held: None,
            keepalive_on: keepalive.is_some(),
            keepalive: keepalive.unwrap_or_default(),
            reuse_port: false,
            epolls: Vec::new(),
        };
        match self.st.alloc_sock(sock) {
            Ok(slot) => Ok(self.st.fd_of(slot)),
            Err(e) => {
                let _ = self.stack.tcp.close(h, self.now);
                Err(e)
            }
        }
    }

    pub fn bind(&mut self, fd: c_int, addr: SocketAddrV4) -> Res<()> {
        let h = self.st.handle(fd)?;
        self.stack.tcp.bind(h, addr).map_err(errno_of)
    }

    pub fn listen(&mut self, fd: c_int, backlog: c_int) -> Res<()> {
        let (_, s) = self.st.sock(fd)?;
        if s.connection {
            return Err(libc::EINVAL);
        }
        let h = s.h;
        // Linux: a negative backlog means the maximum (somaxconn).
        let backlog = if backlog < 0 {
            usize::MAX
        } else {
            backlog as usize
        };
        self.stack.tcp.listen(h, backlog).map_err(errno_of)
    }

    pub fn accept(&mut self, fd: c_int) -> Res<(c_int, SocketAddrV4)> {
        let (slot, s) = self.st.sock(fd)?;
        let (h, keepalive) = (s.h, s.keepalive);
        let accepted = self.stack.tcp.accept(h);
        // The queue may be empty now: an edge-triggered registration
        // forgets EPOLLIN, so the next connection is a new edge.
        self.consumed(slot);
        match accepted {
            Ok((child, remote)) => {
                let opts = self.stack.tcp.options(child).map_err(errno_of)?;
                let sock = Sock {
                    h: child,
                    connection: true,
                    shut_rd: false,
                    shut_wr: false,
                    held: None,
                    keepalive_on: opts.keepalive.is_some(),
                    keepalive: opts.keepalive.unwrap_or(keepalive),
                    reuse_port: false,
                    epolls: Vec::new(),
                };
                match self.st.alloc_sock(sock) {
                    Ok(child_slot) => Ok((self.st.fd_of(child_slot), remote)),
                    Err(e) => {
                        let _ = self.stack.tcp.abort(child);
                        let _ = self.stack.tcp.close(child, self.now);
                        Err(e)
                    }
                }
            }
            Err(e) => Err(errno_of(e)),
        }
    }

    /// Non-blocking connect: EINPROGRESS, then EPOLLOUT and `SO_ERROR`.
    /// Calling it again says how it went, as on BSD and Linux: EALREADY
    /// while the handshake runs, EISCONN once connected, or the error.
    pub fn connect(&mut self, fd: c_int, to: SocketAddrV4) -> Res<()> {
        let (_, s) = self.st.sock(fd)?;
        let h = s.h;
        if s.connection {
            let state = self.stack.tcp.state(h).map_err(errno_of)?;
            if matches!(state, State::SynSent | State::SynReceived) {
                return Err(libc::EALREADY);
            }
            if let Some(e) = self.take_error(fd)? {
                return Err(errno_of(e));
            }
            return Err(libc::EISCONN);
        }
        if to.port() == 0 || to.ip().is_unspecified() || to.ip().is_broadcast() {
            return Err(if to.port() == 0 {
                libc::ECONNREFUSED
            } else {
                libc::ENETUNREACH
            });
        }
        self.stack.tcp.connect(h, self.now, to).map_err(errno_of)?;
        self.st.sock_mut(fd)?.connection = true;
        Err(libc::EINPROGRESS)
    }

    /// The error SO_ERROR reports (and clears).
    fn take_error(&mut self, fd: c_int) -> Res<Option<SocketError>> {
        let s = self.st.sock_mut(fd)?;
        if let Some(e) = s.held.take() {
            return Ok(Some(e));
        }
        let h = s.h;
        self.stack.tcp.take_error(h).map_err(errno_of)
    }

    pub fn send(&mut self, fd: c_int, data: &[u8]) -> Res<usize> {
        self.send_vectored(fd, &[data])
    }

    /// Queues as much of `bufs` as fits, in order. A reset connection is
    /// EPIPE (never a signal); the reset stays owed to recv and SO_ERROR.
    pub fn send_vectored(&mut self, fd: c_int, bufs: &[&[u8]]) -> Res<usize> {
        let slot = self.st.slot(fd)?;
        let s = self.st.sock_mut(fd)?;
        match s.held {
            Some(SocketError::Reset) => return Err(libc::EPIPE),
            Some(e) => {
                s.held = None;
                self.consumed(slot);
                return Err(errno_of(e));
            }
            None => {}
        }
        let h = s.h;
        let mut total = 0usize;
        let mut result = Ok(());
        for b in bufs {
            if b.is_empty() {
                continue;
            }
            match self.stack.tcp.send(h, b) {
                Ok(n) => {
                    total += n;
                    if n < b.len() {
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if bufs.iter().all(|b| b.is_empty()) {
            // send(fd, buf, 0): still reports a socket that cannot send.
            result = self.stack.tcp.send(h, &[]).map(drop);
        }
        let r = match result {
            Ok(()) => Ok(total),
            Err(e) if total > 0 => {
                // What was queued counts; an error found after it waits for
                // the next call.
                self.hold(fd, e)?;
                Ok(total)
            }
            Err(SocketError::Reset) => {
                self.st.sock_mut(fd)?.held = Some(SocketError::Reset);
                Err(libc::EPIPE)
            }
            Err(e) => Err(errno_of(e)),
        };
        // After the error is held: a reset that went from the connection
        // to `held` never left EPOLLERR, so it is no new edge.
        self.consumed(slot);
        r
    }

    /// Keeps a connection's failure (reset, timeout, refusal) that a call
    /// consumed but could not report for the next call.
    fn hold(&mut self, fd: c_int, e: SocketError) -> Res<()> {
        if matches!(
            e,
            SocketError::Reset | SocketError::TimedOut | SocketError::Refused
        ) {
            self.st.sock_mut(fd)?.held = Some(e);
        }
        Ok(())
    }

    pub fn recv(&mut self, fd: c_int, buf: &mut [u8], peek: bool) -> Res<usize> {
        let mut bufs = [buf];
        self.recv_vectored(fd, &mut bufs, peek)
    }

    /// Reads into `bufs` in order. `Ok(0)` is the end of the stream.
    pub fn recv_vectored(&mut self, fd: c_int, bufs: &mut [&mut [u8]], peek: bool) -> Res<usize> {
        let slot = self.st.slot(fd)?;
        let s = self.st.sock_mut(fd)?;
        if let Some(e) = s.held.take() {
            self.consumed(slot);
            return Err(errno_of(e));
        }
        let h = s.h;
        if peek {
            let first = bufs.iter_mut().find(|b| !b.is_empty());
            let n = match first {
                Some(b) => self.stack.tcp.peek(h, b).map_err(errno_of)?,
                None => 0,
            };
            if n > 0 {
                return Ok(n);
            }
            // Nothing buffered: the same answer recv would give, but
            // without consuming anything (an error is, as on Linux).
            let r = self.stack.tcp.readiness(h).map_err(errno_of)?;
            let state = self.stack.tcp.state(h).map_err(errno_of)?;
            if !r.readable {
                return Err(if matches!(state, State::SynSent | State::SynReceived) {
                    libc::ENOTCONN
                } else {
                    libc::EAGAIN
                });
            }
            return self.stack.tcp.recv(h, &mut []).map_err(errno_of);
        }
        let mut total = 0usize;
        let mut result = Ok(());
        let wanted: usize = bufs.iter().map(|b| b.len()).sum();
        if wanted == 0 {
            result = self.stack.tcp.recv(h, &mut []).map(drop);
        }
        for b in bufs.iter_mut() {
            if b.is_empty() {
                continue;
            }
            match self.stack.tcp.recv(h, b) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    if n < b.len() {
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.consumed(slot);
        match result {
            Ok(()) => Ok(total),
            Err(e) if total > 0 => {
                self.hold(fd, e)?;
                Ok(total)
            }
            Err(e) => Err(errno_of(e)),
        }
    }

    pub fn shutdown(&mut self, fd: c_int, how: c_int) -> Res<()> {
        let how = match how {
            libc::SHUT_RD => Shutdown::Read,
            libc::SHUT_WR => Shutdown::Write,
            libc::SHUT_RDWR => Shutdown::Both,
            _ => return Err(libc::EINVAL),
        };
        let (slot, s) = self.st.sock(fd)?;
        let h = s.h;
        self.stack.tcp.shutdown(h, how).map_err(errno_of)?;
        let s = self.st.sock_mut(fd)?;
        s.shut_rd |= matches!(how, Shutdown::Read | Shutdown::Both);
        s.shut_wr |= matches!(how, Shutdown::Write | Shutdown::Both);
        self.consumed(slot);
        Ok(())
    }

    /// Closes a socket or an epoll instance; the descriptor is invalid at
    /// once (a second close is EBADF) and leaves every epoll set.
    pub fn close(&mut self, fd: c_int) -> Res<()> {
        let slot = self.st.slot(fd)?;
        let obj = std::mem::replace(&mut self.st.entries[slot as usize].obj, Obj::Free);
        self.st.release(slot);
        match obj {
            Obj::Free => Err(libc::EBADF),
            Obj::Sock(s) => {
                for &(e, i) in &s.epolls {
                    self.st.unregister(e, i);
                }
                if let Some(x) = self.st.by_index.get_mut(s.h.index() as usize) {
                    if *x == slot {
                        *x = 0;
                    }
                }
                self.stack.tcp.close(s.h, self.now).map_err(errno_of)
            }
            Obj::Epoll(e) => {
                if let Some(ep) = self.st.epolls.get_mut(e as usize).and_then(Option::take) {
                    for r in &ep.regs {
                        if let Obj::Sock(s) = &mut self.st.entries[r.slot as usize].obj {
                            s.epolls.retain(|r| r.0 != e);
                        }
                    }
                }
                self.st.epolls_free.push(e);
                Ok(())
            }
        }
    }

    pub fn local_addr(&mut self, fd: c_int) -> Res<SocketAddrV4> {
        let h = self.st.handle(fd)?;
        self.stack.tcp.local_addr(h).map_err(errno_of)
    }

    pub fn peer_addr(&mut self, fd: c_int) -> Res<SocketAddrV4> {
        let h = self.st.handle(fd)?;
        let state = self.stack.tcp.state(h).map_err(errno_of)?;
        // Linux: ENOTCONN unless the connection is (or was) established.
        if matches!(state, State::SynSent | State::Closed | State::Listen) {
            return Err(libc::ENOTCONN);
        }
        self.stack.tcp.peer_addr(h).map_err(errno_of)
    }

    /// `fcntl(F_GETFL/F_SETFL/F_GETFD/F_SETFD)`: every socket is
    /// non-blocking; the flags are accepted so ported code runs unchanged.
    pub fn fcntl(&mut self, fd: c_int, cmd: c_int, _arg: c_int) -> Res<c_int> {
        self.st.slot(fd)?;
        match cmd {
            libc::F_GETFL => Ok(libc::O_RDWR | libc::O_NONBLOCK),
            libc::F_SETFL => Ok(0),
            libc::F_GETFD => Ok(libc::FD_CLOEXEC),
            libc::F_SETFD => Ok(0),
            _ => Err(libc::EINVAL),
        }
    }

    // ----- options ------------------------------------------------------------

    pub fn setsockopt(&mut self, fd: c_int, level: c_int, name: c_int, val: &[u8]) -> Res<()> {
        let h = self.st.handle(fd)?;
        let tcp = &mut self.stack.tcp;
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => {
                let on = int_of(val)? != 0;
                tcp.set_options(h, |o| o.reuse_addr = on).map_err(errno_of)
            }
            (libc::SOL_SOCKET, libc::SO_REUSEPORT) => {
                // Each core has its own stack, so every core may listen on
                // the same port anyway; accepted for ported code.
                let on = int_of(val)? != 0;
                self.st.sock_mut(fd)?.reuse_port = on;
                Ok(())
            }
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => {
                let on = int_of(val)? != 0;
                let s = self.st.sock_mut(fd)?;
                s.keepalive_on = on;
                let k = on.then_some(s.keepalive);
                tcp.set_keepalive(h, self.now, k).map_err(errno_of)
            }
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                let onoff = int_of(val)?;
                let secs = int_of(val.get(4..).ok_or(libc::EINVAL)?)?;
                let linger = (onoff != 0).then(|| Duration::from_secs(secs.max(0) as u64));
                tcp.set_options(h, |o| o.linger = linger).map_err(errno_of)
            }
            (libc::SOL_SOCKET, libc::SO_RCVBUF) | (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                let n = int_of(val)?.max(0) as usize;
                tcp.set_options(h, |o| {
                    if name == libc::SO_RCVBUF {
                        o.rx_buffer = n
                    } else {
                        o.tx_buffer = n
                    }
                })
                .map_err(errno_of)
            }
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) => {
                let on = int_of(val)? != 0;
                tcp.set_options(h, |o| o.nodelay = on).map_err(errno_of)
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)
            | (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL)
            | (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => {
                let v = int_of(val)?;
                let s = self.st.sock_mut(fd)?;
                match name {
                    libc::TCP_KEEPIDLE => s.keepalive.idle = secs_option(v, 32767)?,
                    libc::TCP_KEEPINTVL => s.keepalive.interval = secs_option(v, 32767)?,
                    _ => {
                        if !(1..=127).contains(&v) {
                            return Err(libc::EINVAL);
                        }
                        s.keepalive.count = v as u32;
                    }
                }
                if s.keepalive_on {
                    let k = Some(s.keepalive);
                    tcp.set_keepalive(h, self.now, k).map_err(errno_of)?;
                }
                Ok(())
            }
            _ => Err(libc::ENOPROTOOPT),
        }
    }

    /// The option's value as the bytes of its C type.
    pub fn getsockopt(&mut self, fd: c_int, level: c_int, name: c_int) -> Res<Vec<u8>> {
        let (_, s) = self.st.sock(fd)?;
        let h = s.h;
        let tcp = &self.stack.tcp;
        let opts = tcp.options(h).map_err(errno_of)?;
        let int = |b: bool| Ok(int_bytes(b as c_int));
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => int(opts.reuse_addr),
            (libc::SOL_SOCKET, libc::SO_REUSEPORT) => int(s.reuse_port),
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => int(opts.keepalive.is_some()),
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                let (onoff, secs) = match opts.linger {
                    Some(d) => (
                        1,
                        d.total_millis().div_ceil(1000).min(c_int::MAX as u64) as c_int,
                    ),
                    None => (0, 0),
                };
                let mut b = int_bytes(onoff);
                b.extend_from_slice(&secs.to_ne_bytes());
                Ok(b)
            }
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
                Ok(int_bytes(opts.rx_buffer.min(c_int::MAX as usize) as c_int))
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                Ok(int_bytes(opts.tx_buffer.min(c_int::MAX as usize) as c_int))
            }
            (libc::SOL_SOCKET, libc::SO_TYPE) => Ok(int_bytes(libc::SOCK_STREAM)),
            (libc::SOL_SOCKET, libc::SO_DOMAIN) => Ok(int_bytes(libc::AF_INET)),
            (libc::SOL_SOCKET, libc::SO_PROTOCOL) => Ok(int_bytes(libc::IPPROTO_TCP)),
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => {
                int(tcp.state(h).map_err(errno_of)? == State::Listen)
            }
            (libc::SOL_SOCKET, libc::SO_ERROR) => {
                let e = self.take_error(fd)?;
                Ok(int_bytes(e.map_or(0, errno_of)))
            }
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) => int(opts.nodelay),
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => {
                Ok(int_bytes(s.keepalive.idle.total_millis() as c_int / 1000))
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => Ok(int_bytes(
                s.keepalive.interval.total_millis() as c_int / 1000,
            )),
            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => Ok(int_bytes(s.keepalive.count as c_int)),
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => {
                let mss = match tcp.info(h) {
                    Ok(i) => i.snd_mss,
                    Err(_) => tcp.config().tcp.mss as u32,
                };
                Ok(int_bytes(mss as c_int))
            }
            (libc::IPPROTO_TCP, libc::TCP_INFO) => self.tcp_info(h),
            _ => Err(libc::ENOPROTOOPT),
        }
    }

    /// Linux's `struct tcp_info`, filled with what flowlane knows.
    fn tcp_info(&self, h: SocketHandle) -> Res<Vec<u8>> {
        use core::mem::offset_of;
        use libc::tcp_info as T;
        let mut b = vec![0u8; core::mem::size_of::<T>()];
        let state = self.stack.tcp.state(h).map_err(errno_of)?;
        put(&mut b, offset_of!(T, tcpi_state), [linux_state(state)]);
        if let Ok(i) = self.stack.tcp.info(h) {
            let us = |d: Duration| (d.total_micros().min(u32::MAX as u64) as u32).to_ne_bytes();
            let u32b = |v: u64| (v.min(u32::MAX as u64) as u32).to_ne_bytes();
            let mss = i.snd_mss.max(1);
            let mut options = (i.timestamps as u8) | ((i.sack as u8) << 1);
            if i.snd_wscale > 0 || i.rcv_wscale > 0 {
                options |= 4;
                let ws = (i.snd_wscale & 0xf) | ((i.rcv_wscale & 0xf) << 4);
                put(&mut b, offset_of!(T, tcpi_snd_rcv_wscale), [ws]);
            }
            put(&mut b, offset_of!(T, tcpi_options), [options]);
            put(
                &mut b,
                offset_of!(T, tcpi_ca_state),
                [if i.in_recovery { 3 } else { 0 }],
            );
            put(&mut b, offset_of!(T, tcpi_rto), us(i.rto));
            put(&mut b, offset_of!(T, tcpi_snd_mss), i.snd_mss.to_ne_bytes());
            put(&mut b, offset_of!(T, tcpi_rcv_mss), i.rcv_mss.to_ne_bytes());
            put(
                &mut b,
                offset_of!(T, tcpi_unacked),
                i.bytes_in_flight.div_ceil(mss).to_ne_bytes(),
            );
            put(&mut b, offset_of!(T, tcpi_rtt), us(i.srtt));
            put(&mut b, offset_of!(T, tcpi_rttvar), us(i.rttvar));
            put(
                &mut b,
                offset_of!(T, tcpi_snd_ssthresh),
                (i.ssthresh / mss).to_ne_bytes(),
            );
            put(
                &mut b,
                offset_of!(T, tcpi_snd_cwnd),
                (i.cwnd / mss).to_ne_bytes(),
            );
            put(&mut b, offset_of!(T, tcpi_advmss), i.rcv_mss.to_ne_bytes());
            put(
                &mut b,
                offset_of!(T, tcpi_rcv_space),
                i.rcv_wnd.to_ne_bytes(),
            );
            put(
                &mut b,
                offset_of!(T, tcpi_total_retrans),
                u32b(i.counters.retransmits),
            );
            put(
                &mut b,
                offset_of!(T, tcpi_bytes_acked),
                i.counters.bytes_acked.to_ne_bytes(),
            );
            put(
                &mut b,
                offset_of!(T, tcpi_bytes_received),
                i.counters.bytes_received.to_ne_bytes(),
            );
            put(
                &mut b,
                offset_of!(T, tcpi_segs_out),
                u32b(i.counters.segs_out),
            );
            put(
                &mut b,
                offset_of!(T, tcpi_segs_in),
                u32b(i.counters.segs_in),
            );
            put(&mut b, offset_of!(T, tcpi_snd_wnd), i.snd_wnd.to_ne_bytes());
        }
        Ok(b)
    }

    // ----- epoll ----------------------------------------------------------------

    pub fn epoll_create(&mut self) -> Res<c_int> {
        let e = match self.st.epolls_free.pop() {
            Some(e) => e,
            None => {
                self.st.epolls.push(None);
                (self.st.epolls.len() - 1) as u32
            }
        };
        match self.st.alloc(Obj::Epoll(e)) {
            Ok(slot) => {
                self.st.epolls[e as usize] = Some(Epoll::default());
                self.stack.tcp.enable_wake_log();
                Ok(self.st.fd_of(slot))
            }
            Err(err) => {
                self.st.epolls_free.push(e);
                Err(err)
            }
        }
    }

    fn epoll_index(&self, epfd: c_int) -> Res<u32> {
        let slot = self.st.slot(epfd)?;
        match self.st.entries[slot as usize].obj {
            Obj::Epoll(e) => Ok(e),
            _ => Err(libc::EINVAL),
        }
    }

    /// `epoll_ctl`. `ev` is None for EPOLL_CTL_DEL.
    pub fn epoll_ctl(&mut self, epfd: c_int, op: c_int, fd: c_int, ev: Option<Event>) -> Res<()> {
        let e = self.epoll_index(epfd)?;
        let slot = self.st.slot(fd)?;
        if fd == epfd {
            return Err(libc::EINVAL);
        }
        if !matches!(self.st.entries[slot as usize].obj, Obj::Sock(_)) {
            // Nesting epoll instances is not supported.
            return Err(libc::EINVAL);
        }
        if !matches!(
            op,
            libc::EPOLL_CTL_ADD | libc::EPOLL_CTL_MOD | libc::EPOLL_CTL_DEL
        ) {
            return Err(libc::EINVAL);
        }
        let CoreState {
            entries, epolls, ..
        } = &mut *self.st;
        let Obj::Sock(s) = &mut entries[slot as usize].obj else {
            return Err(libc::EINVAL);
        };
        let ep = epolls[e as usize].as_mut().ok_or(libc::EBADF)?;
        let known = s.epolls.iter().find(|r| r.0 == e).map(|r| r.1 as usize);
        match (op, known) {
            (libc::EPOLL_CTL_ADD, Some(_)) => Err(libc::EEXIST),
            (libc::EPOLL_CTL_ADD, None) => {
                let ev = ev.ok_or(libc::EFAULT)?;
                let i = ep.regs.len();
                ep.regs.push(Reg {
                    slot,
                    events: ev.events,
                    data: ev.data,
                    last: 0,
                    armed: true,
                    queued: false,
                    ticket: 0,
                });
                // Linux looks at a new registration at once.
                ep.mark(i);
                s.epolls.push((e, i as u32));
                Ok(())
            }
            (libc::EPOLL_CTL_MOD, Some(i)) => {
                let ev = ev.ok_or(libc::EFAULT)?;
                let r = &mut ep.regs[i];
                r.events = ev.events;
                r.data = ev.data;
                // Linux re-checks readiness on MOD: what is ready is
                // reported again (how EPOLLONESHOT is re-armed).
                r.last = 0;
                r.armed = true;
                ep.mark(i);
                Ok(())
            }
            (libc::EPOLL_CTL_DEL, Some(i)) => {
                s.epolls.retain(|r| r.0 != e);
                self.st.unregister(e, i as u32);
                Ok(())
            }
            _ => Err(libc::ENOENT),
        }
    }

    /// `epoll_wait` without waiting: the ready registrations, at most
    /// `max`. Level-triggered registrations report what is ready;
    /// EPOLLET ones report bits that appeared since they were last looked
    /// at (or were consumed by a read, write or accept). Only the
    /// registrations on the instance's check list are looked at: those
    /// whose socket something touched since, and level-triggered ones that
    /// were still ready.
    pub fn epoll_wait(&mut self, epfd: c_int, max: usize) -> Res<Vec<Event>> {
        let e = self.epoll_index(epfd)?;
        if max == 0 {
            return Err(libc::EINVAL);
        }
        self.collect_wakes();
        let CoreState {
            entries, epolls, ..
        } = &mut *self.st;
        let ep = epolls[e as usize].as_mut().ok_or(libc::EBADF)?;
        let mut out = Vec::new();
        // Each registration on the list once; level-triggered ones still
        // ready go to the back of the line.
        let mut left = ep.check.len();
        while out.len() < max && left > 0 {
            left -= 1;
            let Some((i, ticket)) = ep.check.pop_front() else {
                break;
            };
            let Some(r) = ep.regs.get_mut(i as usize) else {
                continue;
            };
            if !r.queued || r.ticket != ticket {
                continue;
            }
            r.queued = false;
            let Obj::Sock(s) = &entries[r.slot as usize].obj else {
                continue;
            };
            if !r.armed {
                continue;
            }
            let now = readiness(self.stack, s);
            let wanted =
                (r.events & (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI)) | EPOLLERR | EPOLLHUP;
            let edge = r.events & EPOLLET != 0;
            let fire = if edge { now & !r.last } else { now } & wanted;
            r.last = now;
            if fire != 0 {
                out.push(Event {
                    events: fire,
                    data: r.data,
                });
                if r.events & EPOLLONESHOT != 0 {
                    r.armed = false;
                }
            }
            if !edge && r.armed && now & wanted != 0 {
                ep.mark(i as usize);
            }
        }
        Ok(out)
    }
}

impl Epoll {
    /// Removes registration `i` (by swapping the last one into its place);
    /// returns the slot of the socket whose registration moved, if one did.
    /// Its entries in `check` go stale; the moved registration, if queued,
    /// is queued again under its new index.
    fn remove(&mut self, i: usize) -> Option<u32> {
        self.regs.swap_remove(i);
        let moved = match self.regs.get_mut(i) {
            Some(r) => {
                if r.queued {
                    r.queued = false;
                    self.mark(i);
                }
                Some(self.regs[i].slot)
            }
            None => None,
        };
        // Stale entries go when a wait passes them; without waits, drop
        // them once they outnumber the live ones (amortised O(1) per
        // entry). Only here, where they are made: never during a wait,
        // whose count of entries to look at this would upset.
        if self.check.len() > 2 * self.regs.len() + 64 {
            let regs = &self.regs;
            self.check.retain(|&(i, t)| {
                regs.get(i as usize)
                    .is_some_and(|r| r.queued && r.ticket == t)
            });
        }
        moved
    }

    /// Queues registration `i` to be looked at on the next wait.
    fn mark(&mut self, i: usize) {
        let r = &mut self.regs[i];
        if !r.queued {
            self.tickets = self.tickets.wrapping_add(1);
            r.queued = true;
            r.ticket = self.tickets;
            self.check.push_back((i as u32, self.tickets));
        }
    }
}
