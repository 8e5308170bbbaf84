//! flowlane as a client, for the interop tests and tools: state machines
//! polled once per loop iteration like the servers.
//!
//! - [`BulkClient`]: one connection; sends `total` bytes of a seeded
//!   pattern ([`fill_pattern`]) while reading whatever comes back, then
//!   half-closes and reads to the end of the stream, then closes.
//! - [`ShortClient`]: `count` sequential connections, each sending one
//!   request and reading the answer, closing first (or after the server's
//!   end of stream).

use core::net::SocketAddrV4;

use crate::api::{Shutdown, SocketError, SocketHandle, Stack, State};
use crate::time::{Duration, Instant};

/// Fills `buf` with the pattern bytes at stream offsets `offset..`: a
/// cheap keyed sequence that a lost, duplicated or reordered byte changes.
pub fn fill_pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_add(seed);
        let x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        *b = (x >> 56) as u8 ^ (x >> 29) as u8;
    }
}

/// Where a [`BulkClient`] hands the bytes it receives.
pub type DataSink = Box<dyn FnMut(&[u8]) + Send>;

/// How a client run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Running,
    Done,
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    Connecting,
    Transfer,
    Finished,
}

/// One long transfer: see the module docs.
pub struct BulkClient {
    remote: SocketAddrV4,
    total: u64,
    seed: u64,
    timeout: Duration,
    handle: Option<SocketHandle>,
    phase: Phase,
    sent: u64,
    received: u64,
    write_shut: bool,
    /// Pattern bytes for stream offsets `chunk_off..chunk_off + chunk.len()`.
    chunk: Vec<u8>,
    chunk_off: u64,
    rx: Vec<u8>,
    on_data: DataSink,
    started: Option<Instant>,
    last_progress: Instant,
    elapsed: Duration,
    outcome: Outcome,
}

impl BulkClient {
    /// A client that sends `total` pattern bytes (seeded with `seed`) to
    /// `remote` and hands every byte it receives to `on_data`. It fails if
    /// no byte moves for `timeout`.
    pub fn new(
        remote: SocketAddrV4,
        total: u64,
        seed: u64,
        timeout: Duration,
        on_data: DataSink,
    ) -> BulkClient {
        BulkClient {
            remote,
            total,
            seed,
            timeout,
            handle: None,
            phase: Phase::Start,
            sent: 0,
            received: 0,
            write_shut: false,
            chunk: Vec::new(),
            chunk_off: 0,
            rx: vec![0; 64 * 1024],
            on_data,
            started: None,
            last_progress: Instant::ZERO,
            elapsed: Duration::ZERO,
            outcome: Outcome::Running,
        }
    }

    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Time from the connect call to the end of the stream.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The connection's handle while it is open.
    pub fn handle(&self) -> Option<SocketHandle> {
        self.handle
    }

    fn fail(&mut self, stack: &mut Stack, now: Instant, why: String) {
        if let Some(h) = self.handle.take() {
            let _ = stack.tcp.close(h, now);
        }
        self.phase = Phase::Finished;
        self.outcome = Outcome::Failed(why);
    }

    pub fn poll(&mut self, stack: &mut Stack, now: Instant) {
        match self.phase {
            Phase::Finished => return,
            Phase::Start => {
                self.started = Some(now);
                self.last_progress = now;
                let r = stack.tcp.socket().and_then(|h| {
                    self.handle = Some(h);
                    stack.tcp.connect(h, now, self.remote)
                });
                if let Err(e) = r {
                    return self.fail(stack, now, format!("connect: {e:?}"));
                }
                self.phase = Phase::Connecting;
            }
            _ => {}
        }
        let Some(h) = self.handle else { return };
        if now - self.last_progress > self.timeout {
            let state = stack.tcp.state(h).ok();
            return self.fail(
                stack,
                now,
                format!(
                    "no progress for {} ms (state {state:?}, sent {}, received {})",
                    self.timeout.total_millis(),
                    self.sent,
                    self.received
                ),
            );
        }
        if self.phase == Phase::Connecting {
            if let Ok(Some(e)) = stack.tcp.take_error(h) {
                return self.fail(stack, now, format!("connect: {e:?}"));
            }
            match stack.tcp.state(h) {
                Ok(State::SynSent) | Ok(State::SynReceived) => return,
                Ok(_) => {
                    self.phase = Phase::Transfer;
                    self.last_progress = now;
                }
                Err(e) => return self.fail(stack, now, format!("connect: {e:?}")),
            }
        }
        // Transfer: send while there is room, read whatever arrived.
        loop {
            let mut moved = false;
            if self.sent < self.total {
                if self.sent >= self.chunk_off + self.chunk.len() as u64 {
                    let len = (self.total - self.sent).min(64 * 1024) as usize;
                    self.chunk.resize(len, 0);
                    self.chunk_off = self.sent;
                    fill_pattern(self.seed, self.chunk_off, &mut self.chunk);
                }
                let from = (self.sent - self.chunk_off) as usize;
                match stack.tcp.send(h, &self.chunk[from..]) {
                    Ok(n) => {
                        self.sent += n as u64;
                        moved |= n > 0;
                    }
                    Err(SocketError::WouldBlock) => {}
                    Err(e) => return self.fail(stack, now, format!("send: {e:?}")),
                }
            } else if !self.write_shut {
                if let Err(e) = stack.tcp.shutdown(h, Shutdown::Write) {
                    return self.fail(stack, now, format!("shutdown: {e:?}"));
                }
                self.write_shut = true;
            }
            match stack.tcp.recv(h, &mut self.rx) {
                Ok(0) => {
                    let _ = stack.tcp.close(h, now);
                    self.handle = None;
                    self.phase = Phase::Finished;
                    self.elapsed = now - self.started.unwrap_or(now);
                    self.outcome = if self.sent == self.total {
                        Outcome::Done
                    } else {
                        Outcome::Failed(format!(
                            "end of stream after sending {} of {} bytes",
                            self.sent, self.total
                        ))
                    };
                    return;
                }
                Ok(n) => {
                    self.received += n as u64;
                    (self.on_data)(&self.rx[..n]);
                    moved = true;
                }
                Err(SocketError::WouldBlock) => {}
                Err(e) => return self.fail(stack, now, format!("recv: {e:?}")),
            }
            if !moved {
                break;
            }
            self.last_progress = now;
        }
    }
}

/// How a [`ShortClient`] knows the answer is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this many bytes (an echo); the client then closes first.
    Bytes(usize),
    /// Read until the server's end of stream, then close (the server closed
    /// first).
    Eof,
}

struct Attempt {
    h: SocketHandle,
    started: Instant,
    sent: usize,
    got: usize,
}

/// Many sequential short connections: see the module docs.
pub struct ShortClient {
    remote: SocketAddrV4,
    count: u64,
    request: Vec<u8>,
    expect: Expect,
    timeout: Duration,
    current: Option<Attempt>,
    started: u64,
    ok: u64,
    failures: Vec<String>,
    failed: u64,
    buf: Vec<u8>,
    /// The first answer, kept for the caller to inspect.
    first_answer: Vec<u8>,
}

impl ShortClient {
    /// `count` connections to `remote`, each sending `request` and waiting
    /// (at most `timeout`) for the answer.
    pub fn new(
        remote: SocketAddrV4,
        count: u64,
        request: Vec<u8>,
        expect: Expect,
        timeout: Duration,
    ) -> ShortClient {
        ShortClient {
            remote,
            count,
            request,
            expect,
            timeout,
            current: None,
            started: 0,
            ok: 0,
            failures: Vec::new(),
            failed: 0,
            buf: vec![0; 16 * 1024],
            first_answer: Vec::new(),
        }
    }

    pub fn ok(&self) -> u64 {
        self.ok
    }

    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// The first few failures, described.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    pub fn first_answer(&self) -> &[u8] {
        &self.first_answer
    }

    pub fn is_done(&self) -> bool {
        self.current.is_none() && self.started >= self.count
    }

    fn finish(&mut self, stack: &mut Stack, now: Instant, failure: Option<String>) {
        if let Some(a) = self.current.take() {
            let _ = stack.tcp.close(a.h, now);
        }
        match failure {
            None => self.ok += 1,
            Some(why) => {
                self.failed += 1;
                if self.failures.len() < 10 {
                    self.failures
                        .push(format!("connection {}: {why}", self.started));
                }
            }
        }
    }

    pub fn poll(&mut self, stack: &mut Stack, now: Instant) {
        for _ in 0..64 {
            if self.current.is_none() {
                if self.started >= self.count {
                    return;
                }
                self.started += 1;
                let r = stack.tcp.socket().and_then(|h| {
                    self.current = Some(Attempt {
                        h,
                        started: now,
                        sent: 0,
                        got: 0,
                    });
                    stack.tcp.connect(h, now, self.remote)
                });
                if let Err(e) = r {
                    self.finish(stack, now, Some(format!("connect: {e:?}")));
                    continue;
                }
            }
            let a = self.current.as_mut().expect("set above");
            let h = a.h;
            if now - a.started > self.timeout {
                let state = stack.tcp.state(h).ok();
                let why = format!("timed out in {state:?} (sent {}, got {})", a.sent, a.got);
                self.finish(stack, now, Some(why));
                continue;
            }
            if let Ok(Some(e)) = stack.tcp.take_error(h) {
                self.finish(stack, now, Some(format!("{e:?}")));
                continue;
            }
            match stack.tcp.state(h) {
                Ok(State::SynSent) | Ok(State::SynReceived) => return,
                Ok(_) => {}
                Err(e) => {
                    self.finish(stack, now, Some(format!("{e:?}")));
                    continue;
                }
            }
            if a.sent < self.request.len() {
                match stack.tcp.send(h, &self.request[a.sent..]) {
                    Ok(n) => a.sent += n,
                    Err(SocketError::WouldBlock) => return,
                    Err(e) => {
                        self.finish(stack, now, Some(format!("send: {e:?}")));
                        continue;
                    }
                }
            }
            let mut done = None;
            loop {
                match stack.tcp.recv(h, &mut self.buf) {
                    Ok(0) => {
                        done = Some(match self.expect {
                            Expect::Eof => None,
                            Expect::Bytes(n) if a.got == n => None,
                            Expect::Bytes(n) => {
                                Some(format!("end of stream after {} of {n} bytes", a.got))
                            }
                        });
                        break;
                    }
                    Ok(n) => {
                        if self.ok == 0 && self.first_answer.len() < 4096 {
                            self.first_answer.extend_from_slice(&self.buf[..n]);
                        }
                        a.got += n;
                        if let Expect::Bytes(want) = self.expect {
                            if a.got >= want {
                                done = Some(if a.got == want {
                                    None
                                } else {
                                    Some(format!("{} bytes, expected {want}", a.got))
                                });
                                break;
                            }
                        }
                    }
                    Err(SocketError::WouldBlock) => break,
                    Err(e) => {
                        done = Some(Some(format!("recv: {e:?}")));
                        break;
                    }
                }
            }
            match done {
                Some(failure) => self.finish(stack, now, failure),
                None => return,
            }
        }
    }
}
