//! The echo server: every byte read is written back, in order.
//!
//! Backpressure: each connection has one buffer; the server reads into it
//! only when it is empty, so while the peer does not drain its receive
//! side, flowlane stops reading and TCP's own flow control slows the peer
//! down. No byte is ever dropped. After the peer's end of stream, the
//! server finishes echoing and then closes (FIN).

use crate::api::{SocketError, SocketHandle, Stack};
use crate::time::{Duration, Instant};

use super::{retire, AppCounters, Listener, Next, Server, DEFAULT_IDLE_TIMEOUT};

/// Bytes a connection holds between reading and writing back.
pub const BUFFER: usize = 64 * 1024;

struct Conn {
    h: SocketHandle,
    buf: Vec<u8>,
    /// Unsent bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    last_active: Instant,
}

/// An echo server on one core.
pub struct EchoServer {
    listener: Listener,
    conns: Vec<Conn>,
    counters: AppCounters,
    idle_timeout: Duration,
}

impl EchoServer {
    pub fn new(port: u16) -> EchoServer {
        EchoServer {
            listener: Listener::new(port),
            conns: Vec::new(),
            counters: AppCounters::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// Closes connections idle (no byte either way) for longer than `t`.
    pub fn with_idle_timeout(mut self, t: Duration) -> EchoServer {
        self.idle_timeout = t;
        self
    }

    fn poll_conn(
        c: &mut Conn,
        stack: &mut Stack,
        now: Instant,
        counters: &mut AppCounters,
    ) -> Next {
        loop {
            if c.start < c.end {
                match stack.tcp.send(c.h, &c.buf[c.start..c.end]) {
                    Ok(n) => {
                        c.start += n;
                        counters.bytes_out += n as u64;
                        if n > 0 {
                            c.last_active = now;
                        }
                    }
                    Err(SocketError::WouldBlock) => {}
                    Err(_) => return Next::Failed,
                }
                if c.start < c.end {
                    // Output is backed up: read nothing more until it drains.
                    break;
                }
                c.start = 0;
                c.end = 0;
            }
            if c.eof {
                break;
            }
            match stack.tcp.recv(c.h, &mut c.buf) {
                Ok(0) => c.eof = true,
                Ok(n) => {
                    c.end = n;
                    counters.bytes_in += n as u64;
                    c.last_active = now;
                }
                Err(SocketError::WouldBlock) => break,
                Err(_) => return Next::Failed,
            }
        }
        if c.eof && c.start == c.end {
            return Next::Closed;
        }
        Next::Keep
    }
}

impl Server for EchoServer {
    fn poll(&mut self, stack: &mut Stack, now: Instant) {
        if let Some(l) = self.listener.get(stack) {
            while let Ok((h, _)) = stack.tcp.accept(l) {
                self.counters.accepted += 1;
                // Echoes go back as soon as they are read: Nagle's
                // algorithm would only hold a small one behind the previous
                // one's ACK.
                let _ = stack.tcp.set_options(h, |o| o.nodelay = true);
                self.conns.push(Conn {
                    h,
                    buf: vec![0; BUFFER],
                    start: 0,
                    end: 0,
                    eof: false,
                    last_active: now,
                });
            }
        }
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            let next = Self::poll_conn(c, stack, now, &mut self.counters);
            let next = next.or_idle(c.last_active, now, self.idle_timeout, &mut self.counters);
            match next {
                Next::Keep => i += 1,
                Next::Closed | Next::Failed => {
                    let c = self.conns.swap_remove(i);
                    let failed = matches!(next, Next::Failed);
                    retire(stack, c.h, failed, now, &mut self.counters);
                }
            }
        }
        self.counters.active = self.conns.len() as u64;
    }

    fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        self.listener.close(stack, now);
        for c in self.conns.drain(..) {
            retire(stack, c.h, false, now, &mut self.counters);
        }
        self.counters.active = 0;
    }

    fn counters(&self) -> AppCounters {
        self.counters
    }

    fn error(&self) -> Option<SocketError> {
        self.listener.error()
    }
}
