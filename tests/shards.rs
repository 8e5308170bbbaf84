//! Two cores of one host (same MAC and IPv4 address) behind a two-queue
//! software NIC, against a peer stack, on virtual time and in one thread:
//! the NIC spreads frames over the queues with its RSS function, each core
//! runs its own stack, and frames a core finds belong to the other core go
//! through the bounded mailbox, as the runtime does across threads.

#![allow(clippy::needless_range_loop)] // cores, queues and mailboxes are parallel arrays

mod framekit;

use core::net::{Ipv4Addr, SocketAddrV4};

use flowlane::api::pair::{A_IP, A_MAC};
use flowlane::api::{SocketError, SocketHandle, Stack, StackConfig, State};
use flowlane::phy::{Device, FrameBatch, Link, LinkConfig};
use flowlane::runtime::Mailbox;
use flowlane::shard::rss::{Rss, MICROSOFT_KEY};
use flowlane::time::{Duration, Instant};
use flowlane::wire::{
    EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Packet, TcpPacket,
};

const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const HOST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
const PORT: u16 = 80;

// One receive queue of the software NIC, plus the core's transmit side.
use framekit::QueueDevice as Queue;

/// The NIC's choice of queue: Toeplitz over the IPv4/TCP 4-tuple with the
/// NIC's key; everything else to queue 0.
fn nic_queue(rss: &Rss, frame: &[u8]) -> usize {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return 0;
    };
    if eth.ethertype() != EtherType::Ipv4 {
        return 0;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return 0;
    };
    if ip.protocol() != IpProtocol::Tcp {
        return 0;
    }
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return 0;
    };
    rss.queue_v4(ip.src_addr(), ip.dst_addr(), tcp.src_port(), tcp.dst_port())
}

struct Host {
    link: Link,
    peer: Stack,
    cores: [Stack; 2],
    queues: [Queue; 2],
    mailboxes: [Mailbox; 2],
    nic: Rss,
    now: Instant,
}

impl Host {
    /// `nic_key` is the NIC's RSS key; the stacks always assume the
    /// Microsoft key, so another key makes the NIC misdirect flows.
    fn new(nic_key: [u8; 40], mailbox: usize) -> Host {
        let mut peer_cfg = StackConfig::new(A_MAC, A_IP, 24);
        peer_cfg.endpoint.hash_seed = 9;
        let stack_rss = Rss::new(MICROSOFT_KEY, 2);
        let cores = [0, 1].map(|core| {
            let mut cfg = StackConfig::new(HOST_MAC, HOST_IP, 24);
            cfg.endpoint.hash_seed = 100 + core as u64;
            let mut s = Stack::new(cfg);
            s.set_steering(Some((stack_rss.clone(), core)));
            s
        });
        Host {
            link: Link::new(
                LinkConfig::default().with_delay(Duration::from_micros(20)),
                1,
            ),
            peer: Stack::new(peer_cfg),
            cores,
            queues: [Queue::default(), Queue::default()],
            mailboxes: [Mailbox::new(mailbox), Mailbox::new(mailbox)],
            nic: Rss::new(nic_key, 2),
            now: Instant::ZERO,
        }
    }

    fn step(&mut self) -> bool {
        let now = self.now;
        let mut moved = self.peer.poll(now, &mut self.link.port(0));
        // The NIC: frames from the wire to the queue RSS picks.
        let mut batch = FrameBatch::new();
        self.link.port(1).receive(now, &mut batch, usize::MAX);
        for f in batch.iter() {
            let q = nic_queue(&self.nic, f);
            self.queues[q].rx.push_back(f.to_vec());
        }
        for core in 0..2 {
            while let Some(f) = self.mailboxes[core].pop() {
                self.cores[core].inject(now, &f);
                moved = true;
            }
            moved |= self.cores[core].poll(now, &mut self.queues[core]);
            let forwarded: Vec<(usize, Vec<u8>)> =
                self.cores[core].iface.take_misdirected().collect();
            for (dest, f) in forwarded {
                self.mailboxes[dest].push(f);
            }
            // The cores' transmit queues go out on the wire.
            let mut out = FrameBatch::new();
            for f in self.queues[core].tx.drain(..) {
                out.push_copy(&f);
            }
            if !out.is_empty() {
                moved = true;
                self.link.port(1).transmit(now, &mut out);
            }
        }
        moved
    }

    fn next_event(&self) -> Option<Instant> {
        let mut t = [self.peer.poll_at(), self.link.poll_at()]
            .into_iter()
            .chain(self.cores.iter().map(|c| c.poll_at()))
            .flatten()
            .min();
        if self.queues.iter().any(|q| !q.rx.is_empty()) {
            t = Some(self.now);
        }
        t
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Host) -> bool) -> bool {
        let end = self.now + limit;
        while self.now <= end {
            if done(self) {
                return true;
            }
            if !self.step() {
                match self.next_event() {
                    Some(t) if t > self.now => self.now = t,
                    Some(_) => self.now += Duration::from_micros(1),
                    None => return done(self),
                }
            }
        }
        false
    }

    fn listen_everywhere(&mut self) -> [SocketHandle; 2] {
        [0, 1].map(|c| {
            let tcp = &mut self.cores[c].tcp;
            let l = tcp.socket().unwrap();
            tcp.bind(l, SocketAddrV4::new(HOST_IP, PORT)).unwrap();
            tcp.listen(l, 256).unwrap();
            l
        })
    }
}

/// The core RSS assigns to a flow from the peer at `peer_port`.
fn owner(peer_port: u16, host_port: u16) -> usize {
    Rss::new(MICROSOFT_KEY, 2).queue_v4(A_IP, HOST_IP, peer_port, host_port)
}

fn passive_flows_land_on_their_cores(nic_key: [u8; 40], mailbox: usize) -> Host {
    let mut h = Host::new(nic_key, mailbox);
    let listeners = h.listen_everywhere();
    let clients: Vec<SocketHandle> = (0..40)
        .map(|_| {
            let s = h.peer.tcp.socket().unwrap();
            let now = h.now;
            h.peer
                .tcp
                .connect(s, now, SocketAddrV4::new(HOST_IP, PORT))
                .unwrap();
            s
        })
        .collect();
    let mut accepted: Vec<(usize, SocketAddrV4)> = Vec::new();
    assert!(h.run_until(Duration::from_secs(60), |h| {
        for core in 0..2 {
            while let Ok((_, peer)) = h.cores[core].tcp.accept(listeners[core]) {
                accepted.push((core, peer));
            }
        }
        accepted.len() == clients.len()
    }));
    for (core, peer) in &accepted {
        assert_eq!(
            *core,
            owner(peer.port(), PORT),
            "flow from {peer} on core {core}"
        );
    }
    let per_core = [0, 1].map(|c| accepted.iter().filter(|(k, _)| *k == c).count());
    assert!(per_core[0] > 0 && per_core[1] > 0, "{per_core:?}");
    for c in clients {
        assert_eq!(h.peer.tcp.state(c).unwrap(), State::Established);
    }
    h
}

#[test]
fn each_passive_flow_lands_on_the_core_its_hash_selects() {
    let h = passive_flows_land_on_their_cores(MICROSOFT_KEY, 1024);
    // The NIC agrees with the stacks: nothing is misdirected.
    for c in &h.cores {
        assert_eq!(c.iface.counters().misdirected, 0);
    }
}

#[test]
fn misdirected_frames_are_forwarded_to_their_core_and_counted() {
    // A NIC with another key sends about half the flows to the wrong queue.
    let mut other = MICROSOFT_KEY;
    other.reverse();
    let h = passive_flows_land_on_their_cores(other, 1024);
    let forwarded: u64 = h.cores.iter().map(|c| c.iface.counters().misdirected).sum();
    assert!(forwarded > 0);
    let arrived: u64 = h.mailboxes.iter().map(|m| m.dropped()).sum();
    assert_eq!(arrived, 0, "no mailbox overflowed");
}

#[test]
fn a_full_mailbox_drops_and_counts_and_tcp_recovers() {
    let mut other = MICROSOFT_KEY;
    other.reverse();
    // Room for one frame: a burst of misdirected frames overflows it.
    let mut h = Host::new(other, 1);
    let listeners = h.listen_everywhere();
    let mut accepted = 0;
    // Groups of five connects at one instant; SYN retransmission gets the
    // dropped ones through within a group's deadline.
    for _ in 0..4 {
        let group: Vec<SocketHandle> = (0..5)
            .map(|_| {
                let s = h.peer.tcp.socket().unwrap();
                let now = h.now;
                h.peer
                    .tcp
                    .connect(s, now, SocketAddrV4::new(HOST_IP, PORT))
                    .unwrap();
                s
            })
            .collect();
        assert!(h.run_until(Duration::from_secs(60), |h| {
            for core in 0..2 {
                while h.cores[core].tcp.accept(listeners[core]).is_ok() {
                    accepted += 1;
                }
            }
            group
                .iter()
                .all(|s| h.peer.tcp.state(*s) == Ok(State::Established))
        }));
    }
    let dropped: u64 = h.mailboxes.iter().map(|m| m.dropped()).sum();
    assert!(dropped > 0, "the one-frame mailboxes overflowed");
    assert!(h.run_until(Duration::from_secs(5), |h| {
        for core in 0..2 {
            while h.cores[core].tcp.accept(listeners[core]).is_ok() {
                accepted += 1;
            }
        }
        accepted == 20
    }));
}

#[test]
fn each_active_open_picks_a_port_whose_replies_hash_to_its_own_core() {
    let mut h = Host::new(MICROSOFT_KEY, 1024);
    let l = h.peer.tcp.socket().unwrap();
    h.peer.tcp.bind(l, SocketAddrV4::new(A_IP, 7000)).unwrap();
    h.peer.tcp.listen(l, 256).unwrap();
    let mut opened = Vec::new();
    for core in 0..2 {
        for _ in 0..20 {
            let s = h.cores[core].tcp.socket().unwrap();
            let now = h.now;
            h.cores[core]
                .tcp
                .connect(s, now, SocketAddrV4::new(A_IP, 7000))
                .unwrap();
            let port = h.cores[core].tcp.local_addr(s).unwrap().port();
            // The NIC hashes the peer's packets: src = peer, dst = us.
            assert_eq!(
                Rss::new(MICROSOFT_KEY, 2).queue_v4(A_IP, HOST_IP, 7000, port),
                core
            );
            opened.push((core, s));
        }
    }
    let mut accepted = 0;
    assert!(h.run_until(Duration::from_secs(30), |h| {
        while h.peer.tcp.accept(l).is_ok() {
            accepted += 1;
        }
        accepted == 40
            && opened
                .iter()
                .all(|(c, s)| h.cores[*c].tcp.state(*s) == Ok(State::Established))
    }));
    for c in &h.cores {
        assert_eq!(c.iface.counters().misdirected, 0);
        assert_eq!(c.tcp.counters().no_socket, 0);
    }
    // And they carry data.
    let (core, s) = opened[25];
    assert_eq!(h.cores[core].tcp.send(s, b"ping"), Ok(4));
    let _ = SocketError::WouldBlock;
}
