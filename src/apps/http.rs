//! A minimal HTTP/1.1 server (RFC 9112) with a small fixed body.
//!
//! - `GET` and `HEAD` of any target: `200 OK` with [`BODY`] (no body for
//!   `HEAD`); any other method: `405 Method Not Allowed`. A request body
//!   announced by `Content-Length` is read and discarded.
//! - Persistence (RFC 9112 §9.3): HTTP/1.1 keeps the connection open unless
//!   the request says `Connection: close`; HTTP/1.0 closes unless it says
//!   `Connection: keep-alive`. When the server closes, it says so in the
//!   response and closes after sending it (it closes first: TIME-WAIT is on
//!   its side).
//! - Garbage (a malformed request line or header, a bad `Content-Length`,
//!   obsolete line folding): `400 Bad Request`, then close. A header block
//!   larger than [`MAX_HEADER`]: `431 Request Header Fields Too Large`, then
//!   close. `Transfer-Encoding` (the request's length cannot be known):
//!   `501 Not Implemented`, then close. Another HTTP major version: `505`.
//! - Pipelined requests are answered in order; the server stops parsing
//!   while [`OUT_HIGH`] bytes of responses wait to be sent (backpressure).

use crate::api::{SocketError, SocketHandle, Stack};
use crate::time::{Duration, Instant};

use super::{retire, AppCounters, Listener, Next, Server, DEFAULT_IDLE_TIMEOUT};

/// The body of every `200 OK`.
pub const BODY: &[u8] = b"Hello from flowlane!\n";

/// Largest request line plus header block, in bytes.
pub const MAX_HEADER: usize = 8 * 1024;

/// Responses waiting to be sent above which no further request is parsed.
pub const OUT_HIGH: usize = 64 * 1024;

/// Largest request body the server will read (and discard).
pub const MAX_BODY: u64 = 1 << 30;

/// A request's method, as far as the server cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other syntactically valid method.
    Other,
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub target: String,
    /// The minor version of HTTP/1.x.
    pub minor: u8,
    /// Whether the connection persists after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// Body bytes that follow the head.
    pub content_length: u64,
}

/// Why a request was refused; each maps to a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// 400: not HTTP.
    Malformed,
    /// 431: the head is larger than the limit.
    TooLarge,
    /// 501: `Transfer-Encoding`, which this server does not decode.
    NotImplemented,
    /// 505: HTTP/2 and later over this syntax, or HTTP/0.x.
    Version,
}

impl ParseError {
    pub fn status(self) -> Status {
        match self {
            ParseError::Malformed => Status::BadRequest,
            ParseError::TooLarge => Status::HeaderTooLarge,
            ParseError::NotImplemented => Status::NotImplemented,
            ParseError::Version => Status::VersionNotSupported,
        }
    }
}

/// The statuses this server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    MethodNotAllowed,
    HeaderTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::MethodNotAllowed => 405,
            Status::HeaderTooLarge => 431,
            Status::NotImplemented => 501,
            Status::VersionNotSupported => 505,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::HeaderTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Finds the end of the head: the index just past the empty line that ends
/// it. Lines end in CRLF, or a bare LF (RFC 9112 §2.2 lets a recipient
/// accept it).
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // RFC 9112 §2.2: empty lines before the request line are ignored.
            if line.is_empty() && !buf[..line_start].iter().all(|&c| c == b'\r' || c == b'\n') {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// Parses one request head from the front of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete (and within
/// `max_header`), or the request with the number of bytes its head took.
pub fn parse_request(
    buf: &[u8],
    max_header: usize,
) -> Result<Option<(Request, usize)>, ParseError> {
    let Some(end) = head_end(buf) else {
        if buf.len() > max_header {
            return Err(ParseError::TooLarge);
        }
        // Fail early: a request line starts with a method (a token).
        if let Some(&b) = buf.iter().find(|&&b| b != b'\r' && b != b'\n') {
            if !is_tchar(b) {
                return Err(ParseError::Malformed);
            }
        }
        return Ok(None);
    };
    if end > max_header {
        return Err(ParseError::TooLarge);
    }
    let head = &buf[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let request_line = lines.next().ok_or(ParseError::Malformed)?;
    let (method, target, minor) = parse_request_line(request_line)?;
    let mut keep_alive = minor >= 1;
    let mut saw_close = false;
    let mut saw_keep_alive = false;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    for line in lines {
        if line.is_empty() {
            break;
        }
        // RFC 9112 §5.2: obsolete line folding is refused here.
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(ParseError::Malformed);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::Malformed)?;
        let name = &line[..colon];
        // RFC 9112 §5.1: no whitespace between the name and the colon.
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(ParseError::Malformed);
        }
        let value = trim_ows(&line[colon + 1..]);
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(ParseError::Malformed);
        }
        if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim_ows(token);
                if token.eq_ignore_ascii_case(b"close") {
                    saw_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    saw_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9112 §6.3: a list of identical values is one value; any
            // other disagreement or a non-number is unrecoverable.
            for v in value.split(|&b| b == b',') {
                let v = trim_ows(v);
                if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                    return Err(ParseError::Malformed);
                }
                let n: u64 = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(ParseError::Malformed)?;
                match content_length {
                    Some(old) if old != n => return Err(ParseError::Malformed),
                    _ => content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = true;
        }
    }
    if chunked {
        return Err(ParseError::NotImplemented);
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(ParseError::TooLarge);
    }
    if saw_close {
        keep_alive = false;
    } else if saw_keep_alive {
        keep_alive = true;
    }
    Ok(Some((
        Request {
            method,
            target,
            minor,
            keep_alive,
            content_length,
        },
        end,
    )))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `method SP request-target SP HTTP-version` (RFC 9112 §3).
fn parse_request_line(line: &[u8]) -> Result<(Method, String, u8), ParseError> {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().ok_or(ParseError::Malformed)?;
    let target = parts.next().ok_or(ParseError::Malformed)?;
    let version = parts.next().ok_or(ParseError::Malformed)?;
    if parts.next().is_some() {
        return Err(ParseError::Malformed);
    }
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::Malformed);
    }
    if target.is_empty() || target.iter().any(|&b| b <= 0x20 || b >= 0x7f) {
        return Err(ParseError::Malformed);
    }
    let minor = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major != b'1' {
                return Err(ParseError::Version);
            }
            minor - b'0'
        }
        _ => return Err(ParseError::Malformed),
    };
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    let target = String::from_utf8_lossy(target).into_owned();
    Ok((method, target, minor))
}

/// Appends a response to `out`. `keep_alive` decides the `Connection`
/// header; `head` leaves the body out (but not its length).
pub fn write_response(out: &mut Vec<u8>, status: Status, keep_alive: bool, head: bool) {
    let body: &[u8] = match status {
        Status::Ok => BODY,
        Status::BadRequest => b"bad request\n",
        Status::MethodNotAllowed => b"method not allowed\n",
        Status::HeaderTooLarge => b"request header too large\n",
        Status::NotImplemented => b"not implemented\n",
        Status::VersionNotSupported => b"HTTP version not supported\n",
    };
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        status.code(),
        status.reason(),
        body.len()
    );
    if status == Status::MethodNotAllowed {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    if !head {
        out.extend_from_slice(body);
    }
}

/// The server's answer to what it has read so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A response was appended; the connection stays open.
    Continue,
    /// A response was appended; close once it is sent.
    Close,
    /// Nothing complete yet.
    NeedMore,
}

/// Request-processing state of one connection, independent of the socket
/// API (the Linux-side server of the demo uses it too).
#[derive(Debug, Default)]
pub struct Session {
    /// Body bytes still to discard.
    body_left: u64,
    pub requests: u64,
    pub bad_requests: u64,
}

impl Session {
    pub fn new() -> Session {
        Session::default()
    }

    /// Consumes what it can from the front of `input` and appends the
    /// responses to `out`. Returns how many bytes of `input` it consumed
    /// and what to do next.
    pub fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Answer) {
        let mut used = 0;
        loop {
            if self.body_left > 0 {
                let n = (self.body_left.min((input.len() - used) as u64)) as usize;
                used += n;
                self.body_left -= n as u64;
                if self.body_left > 0 {
                    return (used, Answer::NeedMore);
                }
            }
            if out.len() >= OUT_HIGH {
                return (used, Answer::Continue);
            }
            match parse_request(&input[used..], MAX_HEADER) {
                Ok(None) => return (used, Answer::NeedMore),
                Ok(Some((req, n))) => {
                    used += n;
                    self.requests += 1;
                    self.body_left = req.content_length;
                    let status = match req.method {
                        Method::Get | Method::Head => Status::Ok,
                        Method::Other => {
                            self.bad_requests += 1;
                            Status::MethodNotAllowed
                        }
                    };
                    write_response(out, status, req.keep_alive, req.method == Method::Head);
                    if !req.keep_alive {
                        return (used, Answer::Close);
                    }
                }
                Err(e) => {
                    self.requests += 1;
                    self.bad_requests += 1;
                    write_response(out, e.status(), false, false);
                    return (input.len(), Answer::Close);
                }
            }
        }
    }
}

struct Conn {
    h: SocketHandle,
    session: Session,
    input: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// Close once `out` is sent.
    closing: bool,
    eof: bool,
    last_active: Instant,
}

/// Bytes read per `recv`.
const READ_CHUNK: usize = 16 * 1024;

/// An HTTP server on one core.
pub struct HttpServer {
    listener: Listener,
    conns: Vec<Conn>,
    counters: AppCounters,
    idle_timeout: Duration,
    scratch: Vec<u8>,
}

impl HttpServer {
    pub fn new(port: u16) -> HttpServer {
        HttpServer {
            listener: Listener::new(port),
            conns: Vec::new(),
            counters: AppCounters::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            scratch: vec![0; READ_CHUNK],
        }
    }

    /// Closes connections idle (no byte either way) for longer than `t`.
    pub fn with_idle_timeout(mut self, t: Duration) -> HttpServer {
        self.idle_timeout = t;
        self
    }

    fn poll_conn(
        c: &mut Conn,
        stack: &mut Stack,
        now: Instant,
        scratch: &mut [u8],
        counters: &mut AppCounters,
    ) -> Next {
        loop {
            // 1. Send what is pending.
            if c.out_pos < c.out.len() {
                match stack.tcp.send(c.h, &c.out[c.out_pos..]) {
                    Ok(n) => {
                        c.out_pos += n;
                        counters.bytes_out += n as u64;
                        if n > 0 {
                            c.last_active = now;
                        }
                    }
                    Err(SocketError::WouldBlock) => {}
                    Err(_) => return Next::Failed,
                }
                if c.out_pos < c.out.len() {
                    if c.out.len() - c.out_pos >= OUT_HIGH {
                        break;
                    }
                } else {
                    c.out.clear();
                    c.out_pos = 0;
                }
            }
            if c.closing {
                if c.out.is_empty() {
                    return Next::Closed;
                }
                break;
            }
            // 2. Answer what has arrived.
            let before = c.out.len();
            let (used, answer) = c.session.process(&c.input, &mut c.out);
            c.input.drain(..used);
            let answered = c.out.len() > before;
            match answer {
                Answer::Close => {
                    c.closing = true;
                    continue;
                }
                // Responses are backed up: parse nothing more for now.
                Answer::Continue if !answered => break,
                _ if answered => continue,
                _ => {}
            }
            if c.eof {
                // The peer is done and no complete request is left.
                c.closing = true;
                continue;
            }
            // 3. Read more.
            match stack.tcp.recv(c.h, scratch) {
                Ok(0) => c.eof = true,
                Ok(n) => {
                    c.input.extend_from_slice(&scratch[..n]);
                    counters.bytes_in += n as u64;
                    c.last_active = now;
                }
                Err(SocketError::WouldBlock) => break,
                Err(_) => return Next::Failed,
            }
        }
        Next::Keep
    }
}

impl Server for HttpServer {
    fn poll(&mut self, stack: &mut Stack, now: Instant) {
        if let Some(l) = self.listener.get(stack) {
            while let Ok((h, _)) = stack.tcp.accept(l) {
                self.counters.accepted += 1;
                // Responses are written whole: Nagle's algorithm would only
                // hold a response back behind the previous one's ACK.
                let _ = stack.tcp.set_options(h, |o| o.nodelay = true);
                self.conns.push(Conn {
                    h,
                    session: Session::new(),
                    input: Vec::new(),
                    out: Vec::new(),
                    out_pos: 0,
                    closing: false,
                    eof: false,
                    last_active: now,
                });
            }
        }
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            let (req0, bad0) = (c.session.requests, c.session.bad_requests);
            let next = Self::poll_conn(c, stack, now, &mut self.scratch, &mut self.counters);
            self.counters.requests += c.session.requests - req0;
            self.counters.bad_requests += c.session.bad_requests - bad0;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<(Request, usize)>, ParseError> {
        parse_request(s.as_bytes(), MAX_HEADER)
    }

    fn req(s: &str) -> Request {
        parse(s).unwrap().unwrap().0
    }

    #[test]
    fn simple_get_keeps_alive_in_1_1() {
        let s = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (r, n) = parse(s).unwrap().unwrap();
        assert_eq!(n, s.len());
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/");
        assert_eq!(r.minor, 1);
        assert!(r.keep_alive);
        assert_eq!(r.content_length, 0);
    }

    #[test]
    fn connection_header_decides_persistence() {
        assert!(!req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!req("GET / HTTP/1.1\r\nconnection:  Upgrade, CLOSE \r\n\r\n").keep_alive);
        assert!(!req("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(req("HEAD /x HTTP/1.1\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn incomplete_heads_wait() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("GET / HT"), Ok(None));
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(parse("\r\n"), Ok(None));
    }

    #[test]
    fn bare_lf_and_leading_empty_lines_are_accepted() {
        let (r, n) = parse("\r\nGET /a HTTP/1.1\nHost: x\n\n").unwrap().unwrap();
        assert_eq!(r.target, "/a");
        assert_eq!(n, 27);
    }

    #[test]
    fn pipelined_requests_parse_one_at_a_time() {
        let s = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
        let (r, n) = parse(s).unwrap().unwrap();
        assert_eq!(r.target, "/1");
        let (r, m) = parse(&s[n..]).unwrap().unwrap();
        assert_eq!(r.target, "/2");
        assert_eq!(n + m, s.len());
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [
            "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03",
            "hello world\r\n\r\n",
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 extra\r\n\r\n",
            "GET / FTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "G\x00T / HTTP/1.1\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
        ] {
            assert_eq!(parse(bad), Err(ParseError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn binary_garbage_fails_before_the_head_ends() {
        assert_eq!(
            parse_request(b"\x16\x03\x01", MAX_HEADER),
            Err(ParseError::Malformed)
        );
    }

    #[test]
    fn versions_and_unsupported_framing() {
        assert_eq!(parse("GET / HTTP/2.0\r\n\r\n"), Err(ParseError::Version));
        assert_eq!(parse("GET / HTTP/0.9\r\n\r\n"), Err(ParseError::Version));
        assert_eq!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ParseError::NotImplemented)
        );
        assert_eq!(req("GET / HTTP/1.2\r\n\r\n").minor, 2);
    }

    #[test]
    fn content_length_is_read() {
        let r = req("POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(r.method, Method::Other);
        assert_eq!(r.content_length, 5);
        assert_eq!(
            req("PUT / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n").content_length,
            7
        );
    }

    #[test]
    fn header_limit() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEADER));
        assert_eq!(parse(&big), Err(ParseError::TooLarge));
        // Incomplete but already over the limit.
        let partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEADER));
        assert_eq!(parse(&partial), Err(ParseError::TooLarge));
        // Just under the limit is fine.
        let pad = MAX_HEADER - "GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        let ok = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(pad));
        assert_eq!(ok.len(), MAX_HEADER);
        assert!(parse(&ok).unwrap().is_some());
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        write_response(&mut out, Status::Ok, true, false);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"), "{s}");
        assert!(s.contains(&format!("Content-Length: {}\r\n", BODY.len())));
        assert!(s.contains("Connection: keep-alive\r\n\r\n"));
        assert!(s.ends_with(std::str::from_utf8(BODY).unwrap()));
        let mut out = Vec::new();
        write_response(&mut out, Status::Ok, false, true);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("Connection: close\r\n\r\n"), "{s}");
    }

    #[test]
    fn session_answers_in_order_and_closes_on_garbage() {
        let mut s = Session::new();
        let mut out = Vec::new();
        let input = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\nnonsense\r\n\r\n";
        let (used, a) = s.process(input, &mut out);
        assert_eq!(a, Answer::Close);
        assert_eq!(used, input.len());
        let text = String::from_utf8_lossy(&out);
        let statuses: Vec<&str> = text
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &text[i + 9..i + 12])
            .collect();
        assert_eq!(statuses, ["200", "405", "200", "400"]);
        assert_eq!(s.requests, 4);
        assert_eq!(s.bad_requests, 2);
    }

    #[test]
    fn session_waits_for_a_split_body_and_closes_for_1_0() {
        let mut s = Session::new();
        let mut out = Vec::new();
        let (used, a) = s.process(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab", &mut out);
        assert_eq!(a, Answer::NeedMore);
        assert_eq!(used, 40);
        out.clear();
        let (used, a) = s.process(b"cdGET / HTTP/1.0\r\n\r\n", &mut out);
        assert_eq!(a, Answer::Close);
        assert_eq!(used, 20);
        assert!(String::from_utf8_lossy(&out).contains("Connection: close"));
    }
}
