//! Helpers shared by the pair tests: a connected pair of sockets, byte
//! flows pumped through them, and SHA-256 of what arrived.
#![allow(dead_code)]

use core::net::SocketAddrV4;

use flowlane::api::pair::{Pair, A_IP, B_IP};
use flowlane::api::{SocketError, SocketHandle, State};
use flowlane::rand::Rng;
use flowlane::time::Duration;
use sha2::{Digest, Sha256};

pub const PORT: u16 = 80;
pub const SECOND: Duration = Duration::from_secs(1);

pub fn listen(p: &mut Pair, port: u16) -> SocketHandle {
    let l = p.b.tcp.socket().unwrap();
    p.b.tcp.bind(l, SocketAddrV4::new(B_IP, port)).unwrap();
    p.b.tcp.listen(l, 128).unwrap();
    l
}

/// A connected pair of sockets: (client on A, server on B, listener on B).
pub fn connect(p: &mut Pair) -> (SocketHandle, SocketHandle, SocketHandle) {
    p.a.tcp.set_record_history(true);
    p.b.tcp.set_record_history(true);
    let l = listen(p, PORT);
    let c = p.a.tcp.socket().unwrap();
    let now = p.now;
    p.a.tcp
        .connect(c, now, SocketAddrV4::new(B_IP, PORT))
        .unwrap();
    let mut s = None;
    // Long enough for SYN retransmissions on a lossy link.
    assert!(p.run_until(Duration::from_secs(120), |p| {
        if s.is_none() {
            s = p.b.tcp.accept(l).ok();
        }
        s.is_some() && p.a.tcp.state(c).unwrap() == State::Established
    }));
    let (s, peer) = s.unwrap();
    assert_eq!(*peer.ip(), A_IP);
    (c, s, l)
}

pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Moves `data` through `send` while draining the peer, until all is read.
pub struct Flow {
    pub data: Vec<u8>,
    pub sent: usize,
    pub received: Vec<u8>,
}

impl Flow {
    pub fn new(data: Vec<u8>) -> Flow {
        Flow {
            received: Vec::with_capacity(data.len()),
            data,
            sent: 0,
        }
    }
    pub fn done(&self) -> bool {
        self.received.len() == self.data.len()
    }
}

pub fn pump(p: &mut Pair, from_a: bool, tx: SocketHandle, rx: SocketHandle, flow: &mut Flow) {
    let (src, dst) = if from_a {
        (&mut p.a.tcp, &mut p.b.tcp)
    } else {
        (&mut p.b.tcp, &mut p.a.tcp)
    };
    while flow.sent < flow.data.len() {
        match src.send(tx, &flow.data[flow.sent..]) {
            Ok(n) => flow.sent += n,
            Err(SocketError::WouldBlock) => break,
            Err(e) => panic!("send: {e:?}"),
        }
    }
    let mut buf = [0u8; 65536];
    loop {
        match dst.recv(rx, &mut buf) {
            Ok(0) => break,
            Ok(n) => flow.received.extend_from_slice(&buf[..n]),
            Err(SocketError::WouldBlock) => break,
            Err(e) => panic!("recv: {e:?}"),
        }
    }
}

pub fn sha(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}
