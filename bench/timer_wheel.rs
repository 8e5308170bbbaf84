//! Timer wheel against a `BinaryHeap` baseline, per operation, with 10k and
//! 1M timers pending.
//!
//! Both structures hold the same workload: deadlines uniform in 1 ms..10 s
//! (levels 0-2 of a 1 ms wheel, so expiry includes cascading), values a
//! `u32` key. The heap baseline is what a stack without a wheel would use:
//! `BinaryHeap<Reverse<(deadline, index, generation)>>` plus a generation
//! slab, so its cancel is a lazy tombstone (bump the generation) and its
//! expiry pops and skips dead entries.
//!
//! Each figure is time per operation: per insert, per cancel, per fired timer
//! (expiry advances time 1 ms per call and counts the whole call, empty ticks
//! and cascades included, against the timers it fired). Untimed work keeps
//! the pending count steady: inserted timers are cancelled again, cancelled
//! ones re-inserted, fired ones re-armed, and the heap's tombstones purged.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::Duration as StdDuration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flowlane::rand::Rng;
use flowlane::time::{Duration, Instant};
use flowlane::timer::{TimerId, TimerWheel, DEFAULT_TICK};

const SIZES: [(usize, &str); 2] = [(10_000, "10k"), (1_000_000, "1M")];
const MAX_DEADLINE_US: u64 = 10_000_000;

fn deadline(rng: &mut Rng, now: u64) -> u64 {
    now + rng.gen_range(1_000, MAX_DEADLINE_US)
}

/// The heap baseline: lazy cancellation by generation.
struct HeapTimers {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    gens: Vec<u32>,
    free: Vec<u32>,
}

#[derive(Clone, Copy)]
struct HeapId(u32, u32);

impl HeapTimers {
    fn with_capacity(n: usize) -> Self {
        HeapTimers {
            heap: BinaryHeap::with_capacity(n),
            gens: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
        }
    }

    fn insert(&mut self, deadline_us: u64) -> HeapId {
        let index = self.free.pop().unwrap_or_else(|| {
            self.gens.push(0);
            (self.gens.len() - 1) as u32
        });
        let gen = self.gens[index as usize];
        self.heap.push(Reverse((deadline_us, index, gen)));
        HeapId(index, gen)
    }

    fn cancel(&mut self, id: HeapId) -> bool {
        let g = &mut self.gens[id.0 as usize];
        if *g != id.1 {
            return false;
        }
        *g = g.wrapping_add(1);
        self.free.push(id.0);
        true
    }

    fn expire(&mut self, now_us: u64, out: &mut Vec<u32>) -> usize {
        let before = out.len();
        while let Some(&Reverse((d, index, gen))) = self.heap.peek() {
            if d > now_us {
                break;
            }
            self.heap.pop();
            let g = &mut self.gens[index as usize];
            if *g == gen {
                *g = g.wrapping_add(1);
                self.free.push(index);
                out.push(index);
            }
        }
        out.len() - before
    }

    /// Drops tombstones (untimed housekeeping between measured chunks).
    fn purge(&mut self) {
        let gens = &self.gens;
        self.heap
            .retain(|&Reverse((_, index, gen))| gens[index as usize] == gen);
    }
}

fn filled_wheel(n: usize, rng: &mut Rng) -> TimerWheel<u32> {
    let mut w = TimerWheel::with_capacity(Instant::ZERO, DEFAULT_TICK, n + n / 10 + 1);
    for i in 0..n {
        w.insert(Instant::from_micros(deadline(rng, 0)), i as u32);
    }
    w
}

fn filled_heap(n: usize, rng: &mut Rng) -> HeapTimers {
    let mut h = HeapTimers::with_capacity(n + n / 10 + 1);
    for _ in 0..n {
        h.insert(deadline(rng, 0));
    }
    h
}

fn chunk(n: usize) -> u64 {
    (n as u64 / 10).clamp(1, 10_000)
}

fn bench_insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_insert");
    for (n, label) in SIZES {
        let k = chunk(n);
        g.bench_function(BenchmarkId::new("wheel", label), |b| {
            let mut rng = Rng::new(1);
            let mut w = filled_wheel(n, &mut rng);
            let mut ids: Vec<TimerId> = Vec::with_capacity(k as usize);
            let mut ds: Vec<Instant> = Vec::with_capacity(k as usize);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let m = left.min(k);
                    ds.clear();
                    ds.extend((0..m).map(|_| Instant::from_micros(deadline(&mut rng, 0))));
                    let t = std::time::Instant::now();
                    for (i, &d) in ds.iter().enumerate() {
                        ids.push(w.insert(d, i as u32));
                    }
                    total += t.elapsed();
                    for id in ids.drain(..) {
                        w.cancel(id);
                    }
                    left -= m;
                }
                total
            });
        });
        g.bench_function(BenchmarkId::new("heap", label), |b| {
            let mut rng = Rng::new(1);
            let mut h = filled_heap(n, &mut rng);
            let mut ids: Vec<HeapId> = Vec::with_capacity(k as usize);
            let mut ds: Vec<u64> = Vec::with_capacity(k as usize);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let m = left.min(k);
                    ds.clear();
                    ds.extend((0..m).map(|_| deadline(&mut rng, 0)));
                    let t = std::time::Instant::now();
                    for &d in &ds {
                        ids.push(h.insert(d));
                    }
                    total += t.elapsed();
                    for id in ids.drain(..) {
                        h.cancel(id);
                    }
                    h.purge();
                    left -= m;
                }
                total
            });
        });
    }
    g.finish();
}

fn bench_cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_cancel");
    for (n, label) in SIZES {
        let k = chunk(n);
        g.bench_function(BenchmarkId::new("wheel", label), |b| {
            let mut rng = Rng::new(2);
            let mut w = filled_wheel(n, &mut rng);
            let mut ids: Vec<TimerId> = Vec::with_capacity(k as usize);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let m = left.min(k);
                    for i in 0..m {
                        let d = Instant::from_micros(deadline(&mut rng, 0));
                        ids.push(w.insert(d, i as u32));
                    }
                    let t = std::time::Instant::now();
                    for &id in &ids {
                        black_box(w.cancel(id));
                    }
                    total += t.elapsed();
                    ids.clear();
                    left -= m;
                }
                total
            });
        });
        g.bench_function(BenchmarkId::new("heap", label), |b| {
            let mut rng = Rng::new(2);
            let mut h = filled_heap(n, &mut rng);
            let mut ids: Vec<HeapId> = Vec::with_capacity(k as usize);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let m = left.min(k);
                    for _ in 0..m {
                        ids.push(h.insert(deadline(&mut rng, 0)));
                    }
                    let t = std::time::Instant::now();
                    for &id in &ids {
                        black_box(h.cancel(id));
                    }
                    total += t.elapsed();
                    ids.clear();
                    h.purge();
                    left -= m;
                }
                total
            });
        });
    }
    g.finish();
}

/// Scales the time spent firing `fired` timers to `iters` of them.
fn per_fired(total: StdDuration, fired: u64, iters: u64) -> StdDuration {
    if fired == 0 {
        return total;
    }
    StdDuration::from_nanos((total.as_nanos() * u128::from(iters) / u128::from(fired)) as u64)
}

fn bench_expire(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_expire");
    let step = Duration::from_millis(1);
    for (n, label) in SIZES {
        g.bench_function(BenchmarkId::new("wheel", label), |b| {
            let mut rng = Rng::new(3);
            let mut w = filled_wheel(n, &mut rng);
            let mut now = Instant::ZERO;
            let mut out = Vec::with_capacity(n);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut fired = 0u64;
                while fired < iters {
                    now += step;
                    out.clear();
                    let t = std::time::Instant::now();
                    w.expire(now, &mut out);
                    total += t.elapsed();
                    fired += out.len() as u64;
                    for &v in &out {
                        let d = Instant::from_micros(deadline(&mut rng, now.total_micros()));
                        w.insert(d, v);
                    }
                }
                per_fired(total, fired, iters)
            });
        });
        g.bench_function(BenchmarkId::new("heap", label), |b| {
            let mut rng = Rng::new(3);
            let mut h = filled_heap(n, &mut rng);
            let mut now = 0u64;
            let mut out = Vec::with_capacity(n);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut fired = 0u64;
                while fired < iters {
                    now += step.total_micros();
                    out.clear();
                    let t = std::time::Instant::now();
                    h.expire(now, &mut out);
                    total += t.elapsed();
                    fired += out.len() as u64;
                    for _ in 0..out.len() {
                        h.insert(deadline(&mut rng, now));
                    }
                }
                per_fired(total, fired, iters)
            });
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(StdDuration::from_secs(1))
        .measurement_time(StdDuration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_insert, bench_cancel, bench_expire
}
criterion_main!(benches);
