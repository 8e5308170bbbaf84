//! Goodput of each congestion control over a 100 Mbit/s, 20 ms RTT link
//! with 1% random loss (both directions), 64 MiB one way, in virtual time.
//! `cargo run --release --example goodput [-- SEEDS]` prints the table the
//! README carries (median over seeds, default 5).

use core::net::SocketAddrV4;

use flowlane::api::pair::{Pair, B_IP};
use flowlane::api::{SocketError, State};
use flowlane::phy::{Link, LinkConfig};
use flowlane::tcp::Algorithm;
use flowlane::time::Duration;

const SIZE: usize = 64 << 20;

fn run(algorithm: Algorithm, sack: bool, seed: u64) -> f64 {
    let link = LinkConfig::default()
        .with_rate(100_000_000)
        .with_delay(Duration::from_millis(10))
        .with_loss(0.01)
        .with_queue_limit(256);
    let (mut a, mut b) = Pair::configs();
    for c in [&mut a, &mut b] {
        c.endpoint.tcp.congestion = algorithm;
        c.endpoint.tcp.sack = sack;
        c.endpoint.tcp.rx_buffer = 4 << 20;
        c.endpoint.tcp.tx_buffer = 4 << 20;
    }
    let mut p = Pair::with(Link::new(link, seed), a, b);
    let l = p.b.tcp.socket().unwrap();
    p.b.tcp.bind(l, SocketAddrV4::new(B_IP, 80)).unwrap();
    p.b.tcp.listen(l, 8).unwrap();
    let c = p.a.tcp.socket().unwrap();
    let now = p.now;
    p.a.tcp
        .connect(c, now, SocketAddrV4::new(B_IP, 80))
        .unwrap();
    let mut s = None;
    assert!(p.run_until(Duration::from_secs(60), |p| {
        s = s.or_else(|| p.b.tcp.accept(l).ok().map(|x| x.0));
        s.is_some() && p.a.tcp.state(c).unwrap() == State::Established
    }));
    let s = s.unwrap();
    let start = p.now;
    let chunk = vec![0x5au8; 64 * 1024];
    let (mut sent, mut got) = (0usize, 0usize);
    let mut buf = vec![0u8; 64 * 1024];
    assert!(p.run_until(Duration::from_secs(3600), |p| {
        while sent < SIZE {
            match p.a.tcp.send(c, &chunk[..chunk.len().min(SIZE - sent)]) {
                Ok(n) => sent += n,
                Err(SocketError::WouldBlock) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        while let Ok(n) = p.b.tcp.recv(s, &mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        got == SIZE
    }));
    let secs = (p.now - start).total_micros() as f64 / 1e6;
    if std::env::var("GOODPUT_DEBUG").is_ok() {
        eprintln!("{:?}", p.a.tcp.info(c).unwrap().counters);
    }
    SIZE as f64 * 8.0 / secs / 1e6
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("| algorithm | goodput, Mbit/s (median of {seeds} seeds) |");
    println!("|---|---|");
    for (name, alg, sack) in [
        ("Reno", Algorithm::Reno, false),
        ("NewReno", Algorithm::NewReno, false),
        ("NewReno + SACK", Algorithm::NewReno, true),
        ("CUBIC + SACK", Algorithm::Cubic, true),
    ] {
        let mut v: Vec<f64> = (1..=seeds).map(|s| run(alg, sack, s)).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("| {name} | {:.1} |", v[v.len() / 2]);
    }
}
