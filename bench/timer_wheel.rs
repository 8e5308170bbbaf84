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
//! So the heap's cancel figure leaves out the cost its tombstones cause
//! later; the mixed workload (`timer_mixed`) times everything for both.

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

    fn contains(&self, id: HeapId) -> bool {
        self.gens[id.0 as usize] == id.1
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

/// Cancels random pending timers (cold entries, as when an old RTO is
/// disarmed), re-arming a replacement untimed after each chunk.
fn bench_cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_cancel");
    for (n, label) in SIZES {
        let k = chunk(n);
        g.bench_function(BenchmarkId::new("wheel", label), |b| {
            let mut rng = Rng::new(2);
            let mut w = TimerWheel::with_capacity(Instant::ZERO, DEFAULT_TICK, n);
            let mut ids: Vec<TimerId> = (0..n)
                .map(|i| w.insert(Instant::from_micros(deadline(&mut rng, 0)), i as u32))
                .collect();
            let mut picks: Vec<usize> = Vec::with_capacity(k as usize);
            let mut victims: Vec<TimerId> = Vec::with_capacity(k as usize);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let m = left.min(k);
                    picks.clear();
                    picks.extend((0..m).map(|_| rng.gen_range(0, n as u64) as usize));
                    victims.clear();
                    victims.extend(picks.iter().map(|&p| ids[p]));
                    let t = std::time::Instant::now();
                    for &id in &victims {
                        black_box(w.cancel(id));
                    }
                    total += t.elapsed();
                    for &p in &picks {
                        if !w.contains(ids[p]) {
                            let d = Instant::from_micros(deadline(&mut rng, 0));
                            ids[p] = w.insert(d, p as u32);
                        }
                    }
                    left -= m;
                }
                total
            });
        });
        g.bench_function(BenchmarkId::new("heap", label), |b| {
            let mut rng = Rng::new(2);
            let mut h = HeapTimers::with_capacity(n);
            let mut ids: Vec<HeapId> = (0..n).map(|_| h.insert(deadline(&mut rng, 0))).collect();
            let mut picks: Vec<usize> = Vec::with_capacity(k as usize);
            let mut victims: Vec<HeapId> = Vec::with_capacity(k as usize);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let m = left.min(k);
                    picks.clear();
                    picks.extend((0..m).map(|_| rng.gen_range(0, n as u64) as usize));
                    victims.clear();
                    victims.extend(picks.iter().map(|&p| ids[p]));
                    let t = std::time::Instant::now();
                    for &id in &victims {
                        black_box(h.cancel(id));
                    }
                    total += t.elapsed();
                    for &p in &picks {
                        if !h.contains(ids[p]) {
                            ids[p] = h.insert(deadline(&mut rng, 0));
                        }
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

/// TCP's dominant pattern: most timers are re-armed (an RTO on every ACK,
/// a keepalive on every segment) many times before one finally fires. Each
/// 1 ms step reschedules random pending timers, about ten times per timer
/// lifetime, then expires what is due and re-arms it. Time per operation
/// (reschedule or fired timer), all of it measured: tombstones, cascades,
/// compaction (the heap compacts the same way, when tombstones outnumber
/// live timers).
fn bench_mixed(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_mixed");
    let mean_life_steps = MAX_DEADLINE_US / 2 / 1_000;
    for (n, label) in SIZES {
        let per_step = (10 * n as u64 / mean_life_steps).max(1);
        g.bench_function(BenchmarkId::new("wheel", label), |b| {
            let mut rng = Rng::new(4);
            let mut w = TimerWheel::with_capacity(Instant::ZERO, DEFAULT_TICK, n);
            let mut ids: Vec<TimerId> = (0..n)
                .map(|i| w.insert(Instant::from_micros(deadline(&mut rng, 0)), i as u32))
                .collect();
            let mut now = 0u64;
            let mut out: Vec<u32> = Vec::with_capacity(n);
            let mut plan: Vec<(usize, u64)> = Vec::with_capacity(per_step as usize);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut ops = 0u64;
                while ops < iters {
                    now += 1_000;
                    plan.clear();
                    plan.extend((0..per_step).map(|_| {
                        let p = rng.gen_range(0, n as u64) as usize;
                        (p, deadline(&mut rng, now))
                    }));
                    out.clear();
                    let t = std::time::Instant::now();
                    for &(p, d) in &plan {
                        if let Some(id) = w.reschedule(ids[p], Instant::from_micros(d)) {
                            ids[p] = id;
                        }
                    }
                    w.expire(Instant::from_micros(now), &mut out);
                    for &v in &out {
                        let d = Instant::from_micros(now + 5_000_000);
                        ids[v as usize] = w.insert(d, v);
                    }
                    total += t.elapsed();
                    ops += per_step + out.len() as u64;
                }
                per_fired(total, ops, iters)
            });
        });
        g.bench_function(BenchmarkId::new("heap", label), |b| {
            let mut rng = Rng::new(4);
            let mut h = HeapTimers::with_capacity(n);
            let mut ids: Vec<HeapId> = (0..n).map(|_| h.insert(deadline(&mut rng, 0))).collect();
            // Which caller slot each heap index belongs to.
            let mut owner: Vec<u32> = (0..n as u32).collect();
            let mut now = 0u64;
            let mut out: Vec<u32> = Vec::with_capacity(n);
            let mut plan: Vec<(usize, u64)> = Vec::with_capacity(per_step as usize);
            b.iter_custom(|iters| {
                let mut total = StdDuration::ZERO;
                let mut ops = 0u64;
                while ops < iters {
                    now += 1_000;
                    plan.clear();
                    plan.extend((0..per_step).map(|_| {
                        let p = rng.gen_range(0, n as u64) as usize;
                        (p, deadline(&mut rng, now))
                    }));
                    out.clear();
                    let t = std::time::Instant::now();
                    for &(p, d) in &plan {
                        if h.cancel(ids[p]) {
                            ids[p] = h.insert(d);
                            owner[ids[p].0 as usize] = p as u32;
                        }
                    }
                    h.expire(now, &mut out);
                    for &index in &out {
                        let p = owner[index as usize] as usize;
                        ids[p] = h.insert(now + 5_000_000);
                        owner[ids[p].0 as usize] = p as u32;
                    }
                    if h.heap.len() > 2 * n + 16 {
                        h.purge();
                    }
                    total += t.elapsed();
                    ops += per_step + out.len() as u64;
                }
                per_fired(total, ops, iters)
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
    targets = bench_insert, bench_cancel, bench_expire, bench_mixed
}
criterion_main!(benches);
