//! epoll with many idle connections: what one request costs a server that
//! also holds `N` idle, registered connections. Each iteration is a W2
//! round trip through epoll: the client writes 64 B on the one active
//! connection, the server's level-triggered epoll_wait must return exactly
//! that socket, the server reads the 64 B and writes them back, and the
//! client reads them. TCP_NODELAY on every socket.
//!
//! - `epoll/flowlane/N`: two flowlane stacks on the in-memory link, each
//!   behind the C API's descriptor layer (`ffi::sockets`, what
//!   `fl_epoll_wait` runs), polled in one thread.
//! - `epoll/linux/N`: the kernel's TCP over loopback and Linux epoll, in one
//!   thread (loopback delivers within the `write`).
//!
//! A wait that scans every registration grows with N; Linux's ready list
//! does not, and neither does flowlane's (it looks only at the sockets the
//! stack's wake log or a call touched). N stays at most 4 000: the kernel
//! side holds 2N+3 descriptors, and this machine kind caps a process at
//! 20 000. Run pinned: `taskset -c 1 cargo bench --bench epoll`;
//! `-- --test` runs each case once.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::OwnedFd;

use criterion::{BenchmarkId, Criterion};
use flowlane::api::pair::{Pair, B_IP};
use flowlane::ffi::sockets::{Core, CoreState, Event};
use flowlane::time::Duration;
use rustix::buffer::spare_capacity;
use rustix::event::epoll;

const MESSAGE: usize = 64;
const IDLE: [usize; 3] = [0, 1_000, 4_000];
const PORT: u16 = 8080;
const EPOLLIN: u32 = libc::EPOLLIN as u32;

/// Two stacks, each with its descriptor table; `active` is the client's
/// and server's descriptor of the connection that carries the messages.
struct Flowlane {
    p: Pair,
    a: CoreState,
    b: CoreState,
    ep: i32,
    active: (i32, i32),
}

impl Flowlane {
    fn a<T>(&mut self, f: impl FnOnce(&mut Core<'_>) -> T) -> T {
        let now = self.p.now;
        f(&mut Core {
            st: &mut self.a,
            stack: &mut self.p.a,
            now,
        })
    }

    fn b<T>(&mut self, f: impl FnOnce(&mut Core<'_>) -> T) -> T {
        let now = self.p.now;
        f(&mut Core {
            st: &mut self.b,
            stack: &mut self.p.b,
            now,
        })
    }

    /// `idle + 1` connections, every server side registered for EPOLLIN;
    /// the last one is the active one.
    fn new(idle: usize) -> Flowlane {
        let mut f = Flowlane {
            p: Pair::new(1),
            a: CoreState::new(0),
            b: CoreState::new(0),
            ep: 0,
            active: (0, 0),
        };
        let (l, ep) = f.b(|c| {
            let l = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
            c.bind(l, SocketAddrV4::new(B_IP, PORT)).unwrap();
            c.listen(l, -1).unwrap();
            (l, c.epoll_create().unwrap())
        });
        f.ep = ep;
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        while servers.len() <= idle {
            // A few hundred handshakes at a time.
            for _ in 0..(idle + 1 - servers.len()).min(256) {
                clients.push(f.a(|c| {
                    let fd = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
                    let one = 1i32.to_ne_bytes();
                    c.setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one)
                        .unwrap();
                    let r = c.connect(fd, SocketAddrV4::new(B_IP, PORT));
                    assert_eq!(r, Err(libc::EINPROGRESS));
                    fd
                }));
            }
            f.p.run_for(Duration::from_millis(5));
            while let Ok((fd, _)) = f.b(|c| c.accept(l)) {
                let data = servers.len() as u64;
                let one = 1i32.to_ne_bytes();
                f.b(|c| {
                    c.setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one)
                        .unwrap();
                    c.epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, Some(ev(data)))
                        .unwrap()
                });
                servers.push(fd);
            }
        }
        assert_eq!(servers.len(), idle + 1, "every connection accepted");
        f.active = (*clients.last().unwrap(), *servers.last().unwrap());
        // Nothing is readable yet.
        assert!(f.b(|c| c.epoll_wait(ep, 64)).unwrap().is_empty());
        f
    }

    /// One stack's poll, as W2's step does them.
    fn poll(&mut self, side: Side) {
        let p = &mut self.p;
        match side {
            Side::Client => p.a.poll(p.now, &mut p.link.port(0)),
            Side::Server => p.b.poll(p.now, &mut p.link.port(1)),
        };
    }

    fn message(&mut self) {
        let (client, server) = self.active;
        let ep = self.ep;
        assert_eq!(self.a(|c| c.send(client, &[0x42; MESSAGE])), Ok(MESSAGE));
        self.poll(Side::Client);
        self.poll(Side::Server);
        let events = self.b(|c| c.epoll_wait(ep, 64)).unwrap();
        assert_eq!(events.len(), 1, "only the active connection is readable");
        let mut buf = [0u8; MESSAGE];
        assert_eq!(self.b(|c| c.recv(server, &mut buf, false)), Ok(MESSAGE));
        assert_eq!(self.b(|c| c.send(server, &buf)), Ok(MESSAGE));
        self.poll(Side::Server);
        self.poll(Side::Client);
        assert_eq!(self.a(|c| c.recv(client, &mut buf, false)), Ok(MESSAGE));
        self.p.now += Duration::from_micros(1);
    }
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

fn ev(data: u64) -> Event {
    Event {
        events: EPOLLIN,
        data,
    }
}

/// The kernel's side: loopback connections and an epoll instance.
struct Linux {
    ep: OwnedFd,
    client: TcpStream,
    server: TcpStream,
    events: Vec<epoll::Event>,
    // Held open, registered, never used.
    _idle: Vec<(TcpStream, TcpStream)>,
}

impl Linux {
    fn new(idle: usize) -> Linux {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll_create1");
        let mut pairs = Vec::new();
        for i in 0..=idle {
            let client = TcpStream::connect(addr).unwrap();
            client.set_nodelay(true).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            server.set_nodelay(true).unwrap();
            epoll::add(
                &ep,
                &server,
                epoll::EventData::new_u64(i as u64),
                epoll::EventFlags::IN,
            )
            .expect("epoll_ctl");
            pairs.push((client, server));
        }
        let (client, server) = pairs.pop().unwrap();
        Linux {
            ep,
            client,
            server,
            events: Vec::with_capacity(64),
            _idle: pairs,
        }
    }

    fn message(&mut self) {
        self.client.write_all(&[0x42; MESSAGE]).unwrap();
        self.events.clear();
        let n = epoll::wait(&self.ep, spare_capacity(&mut self.events), None).expect("epoll_wait");
        assert_eq!(n, 1, "only the active connection is readable");
        let mut buf = [0u8; MESSAGE];
        self.server.read_exact(&mut buf).unwrap();
        self.server.write_all(&buf).unwrap();
        self.client.read_exact(&mut buf).unwrap();
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .configure_from_args();
    let mut g = c.benchmark_group("epoll");
    for idle in IDLE {
        let mut f = Flowlane::new(idle);
        g.bench_function(BenchmarkId::new("flowlane", idle), |b| {
            b.iter(|| f.message())
        });
        drop(f);
        let mut l = Linux::new(idle);
        g.bench_function(BenchmarkId::new("linux", idle), |b| b.iter(|| l.message()));
    }
    g.finish();
    c.final_summary();
}
