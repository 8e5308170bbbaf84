//! The C API's descriptor and epoll layer (`ffi::sockets`) over two stacks
//! on the in-memory link, in virtual time: the errno of each call, the
//! epoll bits Linux's `tcp_poll` reports in each state, level- versus
//! edge-triggered reporting, and descriptors that are stale, foreign or
//! closed twice. No root, no devices; every run is the same.

use core::net::SocketAddrV4;

use flowlane::api::pair::{Pair, A_IP, B_IP};
use flowlane::ffi::sockets::{Core, CoreState, Event};
use flowlane::phy::LinkConfig;
use flowlane::time::Duration;
use libc::{
    EPOLLERR, EPOLLET, EPOLLHUP, EPOLLIN, EPOLLONESHOT, EPOLLOUT, EPOLLRDHUP, EPOLL_CTL_ADD,
    EPOLL_CTL_DEL, EPOLL_CTL_MOD,
};

const PORT: u16 = 8080;
const IN: u32 = EPOLLIN as u32;
const OUT: u32 = EPOLLOUT as u32;
const RDHUP: u32 = EPOLLRDHUP as u32;
const HUP: u32 = EPOLLHUP as u32;
const ERR: u32 = EPOLLERR as u32;
const ET: u32 = EPOLLET as u32;
const ALL: u32 = IN | OUT | RDHUP;

/// Both stacks with a descriptor table each.
struct World {
    p: Pair,
    a: CoreState,
    b: CoreState,
}

impl World {
    fn new(seed: u64) -> World {
        World {
            p: Pair::new(seed),
            a: CoreState::new(0),
            b: CoreState::new(0),
        }
    }

    /// A call on stack A's descriptors.
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

    /// Lets the stacks exchange frames for `ms` of virtual time.
    fn run(&mut self, ms: u64) {
        self.p.run_for(Duration::from_millis(ms));
    }

    /// B listens, A connects, B accepts: (A's fd, B's listener, B's fd).
    fn connected(&mut self) -> (i32, i32, i32) {
        let l = self.b(|c| {
            let l = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
            c.bind(l, SocketAddrV4::new(B_IP, PORT)).unwrap();
            c.listen(l, 16).unwrap();
            l
        });
        let fd = self.a(|c| {
            let fd = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
            assert_eq!(
                c.connect(fd, SocketAddrV4::new(B_IP, PORT)),
                Err(libc::EINPROGRESS)
            );
            fd
        });
        self.run(10);
        let (child, peer) = self.b(|c| c.accept(l)).unwrap();
        assert_eq!(*peer.ip(), A_IP);
        (fd, l, child)
    }
}

fn ev(events: u32, data: u64) -> Option<Event> {
    Some(Event { events, data })
}

/// One wait's events as (data, bits).
fn wait(c: &mut Core<'_>, ep: i32) -> Vec<(u64, u32)> {
    c.epoll_wait(ep, 64)
        .unwrap()
        .into_iter()
        .map(|e| (e.data, e.events))
        .collect()
}

/// The bits reported for one registered socket (registered with `ALL`).
fn bits(c: &mut Core<'_>, fd: i32) -> u32 {
    let ep = c.epoll_create().unwrap();
    c.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev(ALL, 1)).unwrap();
    let got = wait(c, ep);
    c.close(ep).unwrap();
    got.first().map_or(0, |e| e.1)
}

#[test]
fn readiness_bits_follow_linux_through_a_connection_s_life() {
    let mut w = World::new(1);
    // A fresh socket is CLOSED: EPOLLOUT|EPOLLHUP.
    let fresh = w.a(|c| c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap());
    assert_eq!(w.a(|c| bits(c, fresh)), OUT | HUP);
    let l = w.b(|c| {
        let l = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        c.bind(l, SocketAddrV4::new(B_IP, PORT)).unwrap();
        c.listen(l, 16).unwrap();
        l
    });
    // A listener without a connection waiting: nothing.
    assert_eq!(w.b(|c| bits(c, l)), 0);
    let fd = w.a(|c| c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap());
    assert_eq!(
        w.a(|c| c.connect(fd, SocketAddrV4::new(B_IP, PORT))),
        Err(libc::EINPROGRESS)
    );
    // SYN-SENT: nothing.
    assert_eq!(w.a(|c| bits(c, fd)), 0);
    w.run(10);
    assert_eq!(w.a(|c| bits(c, fd)), OUT, "established");
    assert_eq!(w.b(|c| bits(c, l)), IN, "a connection to accept");
    let child = w.b(|c| c.accept(l)).unwrap().0;
    assert_eq!(w.b(|c| bits(c, child)), OUT);
    // Data: IN on B.
    assert_eq!(w.a(|c| c.send(fd, b"hello")), Ok(5));
    w.run(10);
    assert_eq!(w.b(|c| bits(c, child)), IN | OUT);
    // A half-closes: B sees IN|RDHUP with the data still unread (Linux
    // sets RCV_SHUTDOWN when the FIN arrives), A keeps EPOLLOUT (a write
    // now would be EPIPE, which the writer must get to see).
    w.a(|c| c.shutdown(fd, libc::SHUT_WR)).unwrap();
    w.run(10);
    assert_eq!(w.b(|c| bits(c, child)), IN | OUT | RDHUP);
    assert_eq!(w.a(|c| bits(c, fd)), OUT);
    assert_eq!(w.a(|c| c.send(fd, b"x")), Err(libc::EPIPE));
    // B reads everything and the end, then closes its side: both
    // directions are done on A: IN|OUT|RDHUP|HUP.
    let mut buf = [0u8; 16];
    assert_eq!(w.b(|c| c.recv(child, &mut buf, false)), Ok(5));
    assert_eq!(w.b(|c| c.recv(child, &mut buf, false)), Ok(0));
    w.b(|c| c.shutdown(child, libc::SHUT_WR)).unwrap();
    w.run(10);
    assert_eq!(w.a(|c| bits(c, fd)), IN | OUT | RDHUP | HUP);
    assert_eq!(w.b(|c| bits(c, child)), IN | OUT | RDHUP | HUP);
}

#[test]
fn reset_reports_every_bit_send_is_epipe_and_recv_econnreset_once() {
    let mut w = World::new(2);
    let (fd, _l, child) = w.connected();
    // B aborts with RST (SO_LINGER {1, 0} then close).
    w.b(|c| {
        c.setsockopt(
            child,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &[1, 0, 0, 0, 0, 0, 0, 0],
        )
        .unwrap();
        c.close(child).unwrap();
    });
    w.run(10);
    assert_eq!(w.a(|c| bits(c, fd)), IN | OUT | RDHUP | HUP | ERR);
    // Sending on a reset connection is EPIPE, every time; the reset is
    // still there for recv (and SO_ERROR).
    assert_eq!(w.a(|c| c.send(fd, b"x")), Err(libc::EPIPE));
    assert_eq!(w.a(|c| c.send(fd, b"x")), Err(libc::EPIPE));
    assert_eq!(w.a(|c| bits(c, fd)) & ERR, ERR);
    let mut buf = [0u8; 4];
    assert_eq!(w.a(|c| c.recv(fd, &mut buf, false)), Err(libc::ECONNRESET));
    assert_eq!(w.a(|c| c.recv(fd, &mut buf, false)), Ok(0));
    assert_eq!(w.a(|c| bits(c, fd)), IN | OUT | RDHUP | HUP);
    assert_eq!(w.a(|c| c.send(fd, b"x")), Err(libc::EPIPE));
    let so_error = w.a(|c| c.getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR));
    assert_eq!(so_error, Ok(0i32.to_ne_bytes().to_vec()));
}

#[test]
fn refused_connect_reports_error_through_so_error_and_connect_again() {
    let mut w = World::new(3);
    let fd = w.a(|c| c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap());
    let to = SocketAddrV4::new(B_IP, 9);
    assert_eq!(w.a(|c| c.connect(fd, to)), Err(libc::EINPROGRESS));
    assert_eq!(w.a(|c| c.connect(fd, to)), Err(libc::EALREADY));
    w.run(10);
    assert_eq!(w.a(|c| bits(c, fd)), IN | OUT | RDHUP | HUP | ERR);
    // The BSD idiom: connect again to learn the outcome.
    assert_eq!(w.a(|c| c.connect(fd, to)), Err(libc::ECONNREFUSED));
    assert_eq!(
        w.a(|c| c.getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR)),
        Ok(0i32.to_ne_bytes().to_vec())
    );
}

#[test]
fn level_triggered_repeats_edge_triggered_reports_each_new_edge_once() {
    let mut w = World::new(4);
    let (fd, _l, child) = w.connected();
    let (lt, et) = w.b(|c| {
        let lt = c.epoll_create().unwrap();
        let et = c.epoll_create().unwrap();
        c.epoll_ctl(lt, EPOLL_CTL_ADD, child, ev(IN, 7)).unwrap();
        c.epoll_ctl(et, EPOLL_CTL_ADD, child, ev(IN | ET, 8))
            .unwrap();
        (lt, et)
    });
    assert!(w.b(|c| wait(c, lt)).is_empty());
    assert!(w.b(|c| wait(c, et)).is_empty());
    w.a(|c| c.send(fd, &[1u8; 1000])).unwrap();
    w.run(200); // past the delayed ACK, so Nagle lets small writes go
    for _ in 0..3 {
        assert_eq!(w.b(|c| wait(c, lt)), vec![(7, IN)]);
    }
    assert_eq!(w.b(|c| wait(c, et)), vec![(8, IN)]);
    assert!(w.b(|c| wait(c, et)).is_empty(), "the edge was reported");
    // A partial read leaves IN set: no new edge even when more arrives.
    let mut buf = [0u8; 100];
    assert_eq!(w.b(|c| c.recv(child, &mut buf, false)), Ok(100));
    w.a(|c| c.send(fd, &[2u8; 10])).unwrap();
    w.run(200); // past the delayed ACK, so Nagle lets small writes go
    assert!(w.b(|c| wait(c, et)).is_empty());
    // Reading everything (a short read, without waiting for EAGAIN) lets
    // the next arrival be a new edge.
    let mut big = [0u8; 4096];
    assert_eq!(w.b(|c| c.recv(child, &mut big, false)), Ok(910));
    w.a(|c| c.send(fd, &[3u8; 10])).unwrap();
    w.run(200); // past the delayed ACK, so Nagle lets small writes go
    assert_eq!(w.b(|c| wait(c, et)), vec![(8, IN)]);
    // Drained to EAGAIN, then new data: again an edge.
    assert_eq!(w.b(|c| c.recv(child, &mut big, false)), Ok(10));
    assert_eq!(w.b(|c| c.recv(child, &mut big, false)), Err(libc::EAGAIN));
    w.a(|c| c.send(fd, &[4u8; 10])).unwrap();
    w.run(200); // past the delayed ACK, so Nagle lets small writes go
    assert_eq!(w.b(|c| wait(c, et)), vec![(8, IN)]);
    assert_eq!(w.b(|c| wait(c, lt)), vec![(7, IN)]);
}

#[test]
fn oneshot_reports_once_until_modified_and_del_stops_reports() {
    let mut w = World::new(5);
    let (fd, _l, child) = w.connected();
    w.a(|c| c.send(fd, b"abc")).unwrap();
    w.run(10);
    let ep = w.b(|c| c.epoll_create().unwrap());
    w.b(|c| c.epoll_ctl(ep, EPOLL_CTL_ADD, child, ev(IN | EPOLLONESHOT as u32, 3)))
        .unwrap();
    assert_eq!(w.b(|c| wait(c, ep)), vec![(3, IN)]);
    assert!(w.b(|c| wait(c, ep)).is_empty());
    w.b(|c| c.epoll_ctl(ep, EPOLL_CTL_MOD, child, ev(IN | EPOLLONESHOT as u32, 4)))
        .unwrap();
    assert_eq!(w.b(|c| wait(c, ep)), vec![(4, IN)]);
    w.b(|c| c.epoll_ctl(ep, EPOLL_CTL_DEL, child, None))
        .unwrap();
    assert_eq!(
        w.b(|c| c.epoll_ctl(ep, EPOLL_CTL_DEL, child, None)),
        Err(libc::ENOENT)
    );
    assert!(w.b(|c| wait(c, ep)).is_empty());
    // Closing a socket takes it out of every set.
    w.b(|c| c.epoll_ctl(ep, EPOLL_CTL_ADD, child, ev(IN, 5)))
        .unwrap();
    w.b(|c| c.close(child)).unwrap();
    assert!(w.b(|c| wait(c, ep)).is_empty());
}

#[test]
fn many_ready_sockets_take_turns_when_maxevents_is_small() {
    let mut w = World::new(6);
    let ep = w.a(|c| c.epoll_create().unwrap());
    let fds: Vec<i32> = (0..5)
        .map(|i| {
            w.a(|c| {
                let fd = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
                c.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev(OUT, i)).unwrap();
                fd
            })
        })
        .collect();
    assert_eq!(fds.len(), 5);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3 {
        for e in w.a(|c| c.epoll_wait(ep, 2)).unwrap() {
            seen.insert(e.data);
        }
    }
    assert_eq!(seen.len(), 5, "every ready socket was reported: {seen:?}");
}

#[test]
fn closed_stale_and_foreign_descriptors_are_ebadf() {
    let mut w = World::new(7);
    let fd = w.a(|c| c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap());
    assert!(fd > 0);
    w.a(|c| c.close(fd)).unwrap();
    assert_eq!(w.a(|c| c.close(fd)), Err(libc::EBADF));
    // The slot is reused (oldest freed first) under a new generation.
    let mut again = Vec::new();
    for _ in 0..4 {
        again.push(w.a(|c| c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap()));
    }
    assert!(!again.contains(&fd));
    assert_eq!(w.a(|c| c.send(fd, b"x")), Err(libc::EBADF));
    for bad in [-1, 0, 7, i32::MAX, fd ^ (1 << 20)] {
        assert_eq!(w.a(|c| c.close(bad)), Err(libc::EBADF), "fd {bad}");
    }
    // Core 1's descriptors are not core 0's, even with the same slot.
    let mut other = CoreState::new(1);
    let now = w.p.now;
    let theirs = Core {
        st: &mut other,
        stack: &mut w.p.b,
        now,
    }
    .socket(libc::AF_INET, libc::SOCK_STREAM, 0)
    .unwrap();
    assert_eq!(w.a(|c| c.close(theirs)), Err(libc::EBADF));
    // An epoll descriptor is not a socket, and a socket not an epoll.
    let ep = w.a(|c| c.epoll_create().unwrap());
    assert_eq!(w.a(|c| c.send(ep, b"x")), Err(libc::ENOTSOCK));
    assert_eq!(w.a(|c| c.epoll_wait(again[0], 4)), Err(libc::EINVAL));
    w.a(|c| c.close(ep)).unwrap();
    assert_eq!(w.a(|c| c.epoll_wait(ep, 4)), Err(libc::EBADF));
}

#[test]
fn options_round_trip_and_buffers_size_new_connections() {
    let mut w = World::new(8);
    let fd = w.a(|c| c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap());
    let int = |v: i32| v.to_ne_bytes().to_vec();
    w.a(|c| {
        c.setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &int(8192))
            .unwrap();
        c.setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &int(1))
            .unwrap();
        c.setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, &int(5))
            .unwrap();
        c.setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, &int(3))
            .unwrap();
        assert_eq!(
            c.setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &int(0)),
            Err(libc::EINVAL)
        );
        assert_eq!(
            c.getsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF),
            Ok(int(8192))
        );
        assert_eq!(
            c.getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            Ok(int(5))
        );
        assert_eq!(
            c.getsockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            Ok(int(0))
        );
    });
    let l = w.b(|c| {
        let l = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        c.bind(l, SocketAddrV4::new(B_IP, PORT)).unwrap();
        c.listen(l, 4).unwrap();
        l
    });
    w.a(|c| c.connect(fd, SocketAddrV4::new(B_IP, PORT)))
        .unwrap_err();
    w.run(10);
    // The send buffer was sized at connect: at most 8 KiB go in now.
    let n = w.a(|c| c.send(fd, &[0u8; 65536])).unwrap();
    assert!(n <= 8192 && n > 0, "{n}");
    // TCP_INFO: Linux's layout, state ESTABLISHED (1).
    let info = w
        .a(|c| c.getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO))
        .unwrap();
    assert_eq!(info.len(), core::mem::size_of::<libc::tcp_info>());
    assert_eq!(info[0], 1);
    let _ = l;
}

#[test]
fn peek_leaves_data_and_vectored_calls_fill_buffers_in_order() {
    let mut w = World::new(9);
    let (fd, _l, child) = w.connected();
    let (a, b): (&[u8], &[u8]) = (b"hello ", b"world");
    assert_eq!(w.a(|c| c.send_vectored(fd, &[a, b])), Ok(11));
    w.run(10);
    let mut p = [0u8; 5];
    assert_eq!(w.b(|c| c.recv(child, &mut p, true)), Ok(5));
    assert_eq!(&p, b"hello");
    let (mut x, mut y) = ([0u8; 4], [0u8; 16]);
    let n = w.b(|c| c.recv_vectored(child, &mut [&mut x[..], &mut y[..]], false));
    assert_eq!(n, Ok(11));
    assert_eq!(&x, b"hell");
    assert_eq!(&y[..7], b"o world");
    assert_eq!(w.b(|c| c.recv(child, &mut p, true)), Err(libc::EAGAIN));
}

/// Side of the world a descriptor lives on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    A,
    B,
}

impl World {
    fn on<T>(&mut self, side: Side, f: impl FnOnce(&mut Core<'_>) -> T) -> T {
        match side {
            Side::A => self.a(f),
            Side::B => self.b(f),
        }
    }
}

/// One descriptor of the random walk, registered in its side's two epoll
/// instances under `data`.
struct Tracked {
    side: Side,
    fd: i32,
    data: u64,
    /// The bits the edge-triggered instance last saw (the model of
    /// `Reg::last`).
    last: u32,
}

/// epoll_wait looks only at the registrations something touched (the
/// stack's wake log and the calls on a descriptor), not at every one. A
/// random walk of connects, accepts, sends, receives, shutdowns, closes,
/// aborts, SO_ERROR reads and time (handshakes, data, FINs, RSTs, TIME-WAIT,
/// retransmission) checks after every step, on both stacks, that:
/// - a level-triggered instance reports exactly the sockets whose bits are
///   non-zero, with those bits, as a fresh registration of each finds them;
/// - an edge-triggered one reports exactly the bits that appeared since it
///   last looked, less those consumed by a read, a write, a shutdown or an
///   accept (the documented rule).
///
/// A wake the stack forgets to log shows up as a missing event.
#[test]
fn epoll_reports_what_a_full_scan_finds_through_a_random_walk() {
    let mut steps_with_events = 0;
    for seed in 0..24u64 {
        let mut w = World::new(100 + seed);
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let (lt_a, et_a) = w.a(|c| (c.epoll_create().unwrap(), c.epoll_create().unwrap()));
        let (lt_b, et_b) = w.b(|c| (c.epoll_create().unwrap(), c.epoll_create().unwrap()));
        let instances = |side: Side| match side {
            Side::A => (lt_a, et_a),
            Side::B => (lt_b, et_b),
        };
        let mut tracked: Vec<Tracked> = Vec::new();
        let mut data = 0u64;
        let mut register = |w: &mut World, tracked: &mut Vec<Tracked>, side: Side, fd: i32| {
            data += 1;
            let (lt, et) = instances(side);
            w.on(side, |c| {
                c.epoll_ctl(lt, EPOLL_CTL_ADD, fd, ev(ALL, data)).unwrap();
                c.epoll_ctl(et, EPOLL_CTL_ADD, fd, ev(ALL | ET, data))
                    .unwrap();
            });
            tracked.push(Tracked {
                side,
                fd,
                data,
                last: 0,
            });
        };
        let l = w.b(|c| {
            let l = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
            c.bind(l, SocketAddrV4::new(B_IP, PORT)).unwrap();
            c.listen(l, 4).unwrap();
            l
        });
        register(&mut w, &mut tracked, Side::B, l);
        let mut buf = vec![0u8; 4096];
        for step in 0..160 {
            let pick = |tracked: &Vec<Tracked>, r: u64| (r as usize) % tracked.len().max(1);
            let i = pick(&tracked, next(1 << 20));
            // What the step did, for the failure message.
            let what;
            // Calls after which an edge-triggered registration forgets
            // the bits that went away.
            let mut consumed = None;
            match next(12) {
                0 if tracked.iter().filter(|t| t.side == Side::A).count() < 6 => {
                    let fd = w.a(|c| c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap());
                    register(&mut w, &mut tracked, Side::A, fd);
                    let r = w.a(|c| c.connect(fd, SocketAddrV4::new(B_IP, PORT)));
                    assert_eq!(r, Err(libc::EINPROGRESS));
                    what = format!("connect {fd}");
                }
                1 => {
                    if let Ok((fd, _)) = w.b(|c| c.accept(l)) {
                        register(&mut w, &mut tracked, Side::B, fd);
                    }
                    consumed = Some((Side::B, l));
                    what = "accept".to_string();
                }
                2 | 3 if !tracked.is_empty() => {
                    let t = &tracked[i];
                    let (side, fd) = (t.side, t.fd);
                    let len = 1 + next(3000) as usize;
                    let _ = w.on(side, |c| c.send(fd, &vec![7u8; len]));
                    consumed = Some((side, fd));
                    what = format!("send {len} on {side:?} {fd}");
                }
                4 if !tracked.is_empty() => {
                    let t = &tracked[i];
                    let (side, fd) = (t.side, t.fd);
                    let len = 1 + next(4096) as usize;
                    let _ = w.on(side, |c| c.recv(fd, &mut buf[..len], false));
                    consumed = Some((side, fd));
                    what = format!("recv {len} on {side:?} {fd}");
                }
                5 if !tracked.is_empty() => {
                    let t = &tracked[i];
                    let (side, fd) = (t.side, t.fd);
                    let how = [libc::SHUT_RD, libc::SHUT_WR, libc::SHUT_RDWR][next(3) as usize];
                    let _ = w.on(side, |c| c.shutdown(fd, how));
                    consumed = Some((side, fd));
                    what = format!("shutdown {how} on {side:?} {fd}");
                }
                6 if !tracked.is_empty() && tracked[i].fd != l => {
                    let t = tracked.swap_remove(i);
                    let abort = next(2) == 0;
                    w.on(t.side, |c| {
                        if abort {
                            let linger = [1i32.to_ne_bytes(), 0i32.to_ne_bytes()].concat();
                            c.setsockopt(t.fd, libc::SOL_SOCKET, libc::SO_LINGER, &linger)
                                .unwrap();
                        }
                        c.close(t.fd).unwrap();
                    });
                    what = format!("close (abort {abort}) {:?} {}", t.side, t.fd);
                }
                7 if !tracked.is_empty() => {
                    let t = &tracked[i];
                    let (side, fd) = (t.side, t.fd);
                    let _ = w.on(side, |c| c.getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR));
                    what = format!("SO_ERROR on {side:?} {fd}");
                }
                8 => {
                    // Loss, up to a black hole: retransmissions, and
                    // keepalive or the RTO giving up (timer-driven).
                    let loss = [0.0, 0.0, 0.3, 1.0][next(4) as usize];
                    w.p.link
                        .set_config_all(LinkConfig::default().with_loss(loss));
                    what = format!("loss {loss}");
                }
                9 if !tracked.is_empty() => {
                    let t = &tracked[i];
                    let (side, fd) = (t.side, t.fd);
                    let one = 1i32.to_ne_bytes();
                    w.on(side, |c| {
                        for (level, name) in [
                            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
                            (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
                            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
                            (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
                        ] {
                            c.setsockopt(fd, level, name, &one).unwrap();
                        }
                    });
                    what = format!("keepalive on {side:?} {fd}");
                }
                _ => {
                    let ms = [0, 1, 5, 40, 300, 3000][next(6) as usize];
                    w.run(ms);
                    what = format!("run {ms} ms");
                }
            }
            if let Some((side, fd)) = consumed {
                let now = w.on(side, |c| bits(c, fd));
                if let Some(t) = tracked.iter_mut().find(|t| t.side == side && t.fd == fd) {
                    t.last &= now;
                }
            }
            for side in [Side::A, Side::B] {
                let (lt, et) = instances(side);
                let now: Vec<(u64, u32)> = tracked
                    .iter()
                    .filter(|t| t.side == side)
                    .map(|t| (t.data, w.on(side, |c| bits(c, t.fd))))
                    .collect();
                let mut want_lt: Vec<(u64, u32)> =
                    now.iter().copied().filter(|&(_, b)| b != 0).collect();
                let mut want_et: Vec<(u64, u32)> = tracked
                    .iter()
                    .filter(|t| t.side == side)
                    .zip(&now)
                    .map(|(t, &(d, b))| (d, b & !t.last))
                    .filter(|&(_, b)| b != 0)
                    .collect();
                let mut got_lt = w.on(side, |c| wait(c, lt));
                let mut got_et = w.on(side, |c| wait(c, et));
                for v in [&mut want_lt, &mut want_et, &mut got_lt, &mut got_et] {
                    v.sort_unstable();
                }
                let ctx = format!("seed {seed} step {step} ({what}) side {side:?}");
                assert_eq!(got_lt, want_lt, "level-triggered, {ctx}");
                assert_eq!(got_et, want_et, "edge-triggered, {ctx}");
                steps_with_events += usize::from(!got_et.is_empty());
                for (t, &(_, b)) in tracked.iter_mut().filter(|t| t.side == side).zip(&now) {
                    t.last = b;
                }
            }
        }
    }
    // The walk reached states that report something (not only empty sets).
    eprintln!("steps with events {steps_with_events}");
    assert!(steps_with_events > 200, "{steps_with_events}");
}

#[test]
fn a_registration_deleted_and_added_again_reports_once_per_wait() {
    let mut w = World::new(10);
    let ep = w.a(|c| c.epoll_create().unwrap());
    let fd = w.a(|c| c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap());
    w.a(|c| {
        // Ready (a fresh socket is OUT|HUP) and queued to be looked at.
        c.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev(OUT, 1)).unwrap();
        assert_eq!(wait(c, ep), vec![(1, OUT | HUP)]);
        c.epoll_ctl(ep, EPOLL_CTL_DEL, fd, None).unwrap();
        assert!(wait(c, ep).is_empty(), "deleted");
        c.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev(OUT, 2)).unwrap();
        c.epoll_ctl(ep, EPOLL_CTL_DEL, fd, None).unwrap();
        c.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev(OUT, 3)).unwrap();
        assert_eq!(wait(c, ep), vec![(3, OUT | HUP)]);
        assert_eq!(wait(c, ep), vec![(3, OUT | HUP)]);
    });
}

#[test]
fn many_deletes_without_a_wait_lose_no_event_and_report_none_twice() {
    let mut w = World::new(11);
    let ep = w.a(|c| c.epoll_create().unwrap());
    let (keep, churn) = w.a(|c| {
        let keep = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let churn = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        (keep, churn)
    });
    w.a(|c| {
        c.epoll_ctl(ep, EPOLL_CTL_ADD, keep, ev(OUT, 1)).unwrap();
        // Each ADD queues a look and each DEL leaves that entry stale:
        // far more stale entries than registrations, with no wait between.
        for i in 0..1000 {
            c.epoll_ctl(ep, EPOLL_CTL_ADD, churn, ev(OUT, 100 + i))
                .unwrap();
            c.epoll_ctl(ep, EPOLL_CTL_DEL, churn, None).unwrap();
        }
        c.epoll_ctl(ep, EPOLL_CTL_ADD, churn, ev(OUT, 7)).unwrap();
        let mut got = wait(c, ep);
        got.sort_unstable();
        assert_eq!(got, vec![(1, OUT | HUP), (7, OUT | HUP)]);
        // Level-triggered: both again, each once.
        let mut got = wait(c, ep);
        got.sort_unstable();
        assert_eq!(got, vec![(1, OUT | HUP), (7, OUT | HUP)]);
    });
}

#[test]
fn a_wait_after_most_ready_sockets_closed_reports_each_survivor_once() {
    let mut w = World::new(12);
    let ep = w.a(|c| c.epoll_create().unwrap());
    let fds: Vec<i32> = (0..100)
        .map(|i| {
            w.a(|c| {
                let fd = c.socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
                c.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev(OUT, i)).unwrap();
                fd
            })
        })
        .collect();
    w.a(|c| {
        // All ready and level-triggered: all stay on the list.
        assert_eq!(wait(c, ep).len(), 64);
        for &fd in &fds[5..] {
            c.close(fd).unwrap();
        }
        // Far more stale entries than live registrations now.
        let mut got = wait(c, ep);
        got.sort_unstable();
        let want: Vec<(u64, u32)> = (0..5).map(|i| (i, OUT | HUP)).collect();
        assert_eq!(got, want);
    });
}
