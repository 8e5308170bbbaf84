//! The Toeplitz RSS hash per call: the table-driven `Rss::hash_v4` beside
//! the bit-at-a-time reference, and one `pick_port` search.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use flowlane::rand::Rng;
use flowlane::shard::rss::{toeplitz_bitwise, Rss, MICROSOFT_KEY};

type Tuple = (Ipv4Addr, Ipv4Addr, u16, u16);

fn tuples() -> Vec<Tuple> {
    let mut rng = Rng::new(11);
    (0..1024)
        .map(|_| {
            (
                Ipv4Addr::from(rng.next_u32()),
                Ipv4Addr::from(rng.next_u32()),
                rng.next_u32() as u16,
                rng.next_u32() as u16,
            )
        })
        .collect()
}

fn bench_hash(c: &mut Criterion) {
    let rss = Rss::new(MICROSOFT_KEY, 4);
    let tuples = tuples();
    let mut g = c.benchmark_group("toeplitz_v4");
    g.bench_function("table", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            let (s, d, sp, dp) = black_box(tuples[i]);
            rss.hash_v4(s, d, sp, dp)
        })
    });
    g.bench_function("bitwise", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            let (s, d, sp, dp) = black_box(tuples[i]);
            let mut input = [0u8; 12];
            input[..4].copy_from_slice(&s.octets());
            input[4..8].copy_from_slice(&d.octets());
            input[8..10].copy_from_slice(&sp.to_be_bytes());
            input[10..].copy_from_slice(&dp.to_be_bytes());
            toeplitz_bitwise(&MICROSOFT_KEY, &input)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("rss_pick_port");
    let local = Ipv4Addr::new(198, 51, 100, 7);
    g.bench_function("4_queues", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            let (s, _, sp, _) = black_box(tuples[i]);
            let remote = SocketAddrV4::new(s, sp);
            rss.pick_port(local, remote, 3, (32_768, 60_999), i as u32 * 97, |_| true)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_hash
}
criterion_main!(benches);
