//! The small servers the CLI and the demo run, and the clients the interop
//! tests drive flowlane with: per-core state machines on the Rust socket
//! API ([`crate::api`]), polled once per loop iteration with the core's
//! stack and `now`. They never block and never read a clock.
//!
//! - [`echo::EchoServer`]: writes back what it reads, with backpressure (it
//!   stops reading while its output is unflushed, so no byte is dropped)
//!   and closes after the peer's end of stream once everything is echoed.
//! - [`http::HttpServer`]: a minimal HTTP/1.1 server with a small fixed
//!   body (keep-alive, `Connection: close`, HTTP/1.0, 400 for garbage, a
//!   header-size limit); [`http::parse_request`] is its parser.
//! - [`client::BulkClient`] and [`client::ShortClient`]: flowlane as a
//!   client (one long transfer; many sequential short connections).
//!
//! [`runtime_app`] turns a server into a [`crate::runtime`] application
//! that publishes its counters and closes everything when asked to drain.

pub mod client;
pub mod echo;
pub mod http;

use core::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::api::{SocketError, SocketHandle, Stack};
use crate::runtime::CoreContext;
use crate::time::{Duration, Instant};

pub use echo::EchoServer;
pub use http::HttpServer;

/// Which server `flowlane serve --app` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKind {
    Http,
    Echo,
}

impl AppKind {
    pub fn name(self) -> &'static str {
        match self {
            AppKind::Http => "http",
            AppKind::Echo => "echo",
        }
    }

    /// A fresh server of this kind listening on `port` (on every address of
    /// the stack).
    pub fn server(self, port: u16) -> Box<dyn Server> {
        match self {
            AppKind::Http => Box::new(HttpServer::new(port)),
            AppKind::Echo => Box::new(EchoServer::new(port)),
        }
    }
}

/// What a server counted. Connections' TCP retransmissions are added when
/// the server lets go of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppCounters {
    pub accepted: u64,
    /// Connections the server has let go of (closed, reset, timed out).
    pub finished: u64,
    /// Connections that ended in an error (reset, timeout).
    pub failed: u64,
    /// Connections closed because they were idle too long.
    pub idle_closed: u64,
    /// HTTP requests answered (any status).
    pub requests: u64,
    /// HTTP requests answered with 4xx/5xx.
    pub bad_requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// TCP segments retransmitted on the connections the server let go of.
    pub retransmits: u64,
    /// Of those connections: retransmission timeouts, and fast
    /// retransmits (duplicate ACKs or SACK loss detection).
    pub rtos: u64,
    pub fast_retransmits: u64,
    /// Connections open now.
    pub active: u64,
}

impl AppCounters {
    /// Adds `other` to `self` (summing cores).
    pub fn add(&mut self, other: &AppCounters) {
        self.accepted += other.accepted;
        self.finished += other.finished;
        self.failed += other.failed;
        self.idle_closed += other.idle_closed;
        self.requests += other.requests;
        self.bad_requests += other.bad_requests;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.retransmits += other.retransmits;
        self.rtos += other.rtos;
        self.fast_retransmits += other.fast_retransmits;
        self.active += other.active;
    }
}

/// A server polled once per loop iteration on one core.
pub trait Server: Send {
    /// Listens (on the first call), accepts, moves bytes, closes.
    fn poll(&mut self, stack: &mut Stack, now: Instant);
    /// Closes the listener and every connection (gracefully: FIN).
    fn shutdown(&mut self, stack: &mut Stack, now: Instant);
    fn counters(&self) -> AppCounters;
    /// Why the listener could not be opened, if it could not.
    fn error(&self) -> Option<SocketError>;
}

/// How long a connection may sit idle (no byte either way) before a server
/// closes it: half-open peers cannot pin memory forever.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often [`runtime_app`] publishes counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(10);

/// A server's published state, read by other threads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Published {
    pub counters: AppCounters,
    /// The listener failed to open (the server then does nothing).
    pub error: Option<SocketError>,
    /// `shutdown` has run on this core.
    pub drained: bool,
}

/// Wraps `server` as a runtime application: polls it every iteration,
/// publishes its counters into `out` every 10 ms, and when `drain` turns
/// true, closes the listener and every connection once.
pub fn runtime_app(
    mut server: Box<dyn Server>,
    drain: Arc<AtomicBool>,
    out: Arc<Mutex<Published>>,
) -> Box<dyn FnMut(&mut CoreContext<'_>) + Send> {
    let mut next_publish = Instant::ZERO;
    let mut drained = false;
    Box::new(move |ctx: &mut CoreContext<'_>| {
        if !drained && drain.load(Ordering::Relaxed) {
            server.shutdown(ctx.stack, ctx.now);
            drained = true;
            next_publish = Instant::ZERO;
        }
        server.poll(ctx.stack, ctx.now);
        if ctx.now >= next_publish {
            if let Ok(mut p) = out.lock() {
                p.counters = server.counters();
                p.error = server.error();
                p.drained = drained;
            }
            next_publish = ctx.now + PUBLISH_EVERY;
        }
    })
}

/// A listening socket opened on first use: `socket`, SO_REUSEADDR, `bind`
/// to `0.0.0.0:port`, `listen`.
#[derive(Debug)]
pub(crate) struct Listener {
    port: u16,
    handle: Option<SocketHandle>,
    error: Option<SocketError>,
    closed: bool,
}

impl Listener {
    pub(crate) fn new(port: u16) -> Listener {
        Listener {
            port,
            handle: None,
            error: None,
            closed: false,
        }
    }

    /// The listener, opening it if needed; `None` after an error or close.
    pub(crate) fn get(&mut self, stack: &mut Stack) -> Option<SocketHandle> {
        if self.handle.is_none() && self.error.is_none() && !self.closed {
            match open_listener(stack, self.port) {
                Ok(h) => self.handle = Some(h),
                Err(e) => self.error = Some(e),
            }
        }
        self.handle
    }

    pub(crate) fn error(&self) -> Option<SocketError> {
        self.error
    }

    pub(crate) fn close(&mut self, stack: &mut Stack, now: Instant) {
        if let Some(h) = self.handle.take() {
            let _ = stack.tcp.close(h, now);
        }
        self.closed = true;
    }
}

fn open_listener(stack: &mut Stack, port: u16) -> Result<SocketHandle, SocketError> {
    let h = stack.tcp.socket()?;
    let r = stack
        .tcp
        .set_options(h, |o| o.reuse_addr = true)
        .and_then(|_| {
            stack
                .tcp
                .bind(h, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        })
        .and_then(|_| stack.tcp.listen(h, 1024));
    match r {
        Ok(()) => Ok(h),
        Err(e) => {
            let _ = stack.tcp.close(h, Instant::ZERO);
            Err(e)
        }
    }
}

/// What one poll of a server connection decided.
pub(crate) enum Next {
    Keep,
    /// Closed gracefully (FIN sent or about to be).
    Closed,
    /// Failed (reset, timed out, ...): handle released.
    Failed,
}

impl Next {
    /// A connection that would stay but has been idle past the limit is
    /// closed (counted).
    pub(crate) fn or_idle(
        self,
        last_active: Instant,
        now: Instant,
        idle_timeout: Duration,
        counters: &mut AppCounters,
    ) -> Next {
        if matches!(self, Next::Keep) && now - last_active > idle_timeout {
            counters.idle_closed += 1;
            return Next::Closed;
        }
        self
    }
}

/// Lets go of a server connection: counts its retransmissions and its end
/// (failed or not) and closes the handle.
pub(crate) fn retire(
    stack: &mut Stack,
    h: SocketHandle,
    failed: bool,
    now: Instant,
    counters: &mut AppCounters,
) {
    count_retransmits(stack, h, counters);
    if failed {
        counters.failed += 1;
    }
    counters.finished += 1;
    let _ = stack.tcp.close(h, now);
}

/// Adds a connection's retransmission counters (nothing if it is gone).
pub(crate) fn count_retransmits(stack: &Stack, h: SocketHandle, counters: &mut AppCounters) {
    if let Ok(i) = stack.tcp.info(h) {
        counters.retransmits += i.counters.retransmits;
        counters.rtos += i.counters.rtos;
        counters.fast_retransmits += i.counters.fast_retransmits;
    }
}
