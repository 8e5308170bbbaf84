//! BENCHMARKS.md's W1–W4 on two flowlane stacks over the in-memory link and,
//! in the same run, on two smoltcp 0.14 stacks over an in-memory cable, each
//! pair polled in one thread (see `workloads.rs` for what both do).
//!
//! One criterion iteration is one operation: W1 one MiB sent and read
//! (throughput in bytes, so criterion prints GiB/s; the report turns it into
//! Gbit/s), W2/W3 one request/response pair. Each benchmark keeps its pair
//! (and connections) from warm-up to the last sample, so W1 measures a long
//! transfer cut into samples.
//!
//! W4 is not criterion's: each stack runs BENCHMARKS.md's fixed window
//! (5 s of connections from a fresh pair, 0.2 s in quick mode), and its
//! connections, failed connects, TIME-WAIT count and the rate in each tenth
//! of the window are printed and written to
//! `target/criterion/w4_connection_rate/<stack>/extra-<baseline>.json` for
//! the report. (Criterion samples of a rate that decays, as smoltcp's does,
//! measure whichever phase the warm-up's sample plan hits: 5 200 to 11 400
//! connections/s for smoltcp in runs minutes apart.)
//!
//! `cargo bench --bench pair` times everything in a few minutes;
//! `cargo bench --bench pair -- --test` runs each workload once.

#[path = "results.rs"]
mod results;
#[path = "workloads.rs"]
mod workloads;

use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput};
use results::{baseline_name, fixed_window, measuring, selected, W4Window};
use workloads::{Bulk, ConnRate, Echo, Flowlane, Net, Smoltcp, BULK_OP_BYTES, ECHO_CONNECTIONS};

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(10);
    g
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn w1<N: Net>(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let mut w: Option<Bulk<N>> = None;
    g.bench_function(N::NAME, |b| {
        let w = w.get_or_insert_with(Bulk::new);
        b.iter_custom(|mib| timed(|| w.run(mib)))
    });
}

fn w2_w3<N: Net>(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, connections: usize) {
    let mut w: Option<Echo<N>> = None;
    g.bench_function(N::NAME, |b| {
        let w = w.get_or_insert_with(|| Echo::new(connections));
        b.iter_custom(|pairs| timed(|| w.run(pairs)))
    });
}

/// W4 as BENCHMARKS.md defines it: connections completed per second over
/// a fixed window of wall clock from a fresh pair (5 s; 0.2 s in quick
/// mode), not criterion samples. Printed, and written beside criterion's
/// results for the report.
fn w4<N: Net>(baseline: &str, seconds: f64) {
    let mut w = ConnRate::<N>::new();
    let (seconds, rates) = fixed_window(&mut w, seconds, ConnRate::completed, ConnRate::run_until);
    let s = w.stats();
    W4Window {
        completed: s.completed,
        seconds,
        failed: s.failed,
        time_wait: s.time_wait,
        rates,
    }
    .report("w4_connection_rate", N::NAME, baseline, "");
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let baseline = baseline_name();

    let mut g = group(&mut c, "w1_bulk");
    g.throughput(Throughput::Bytes(BULK_OP_BYTES));
    w1::<Flowlane>(&mut g);
    w1::<Smoltcp>(&mut g);
    g.finish();

    let mut g = group(&mut c, "w2_echo_latency");
    g.throughput(Throughput::Elements(1));
    w2_w3::<Flowlane>(&mut g, 1);
    w2_w3::<Smoltcp>(&mut g, 1);
    g.finish();

    let mut g = group(&mut c, "w3_echo_throughput");
    g.throughput(Throughput::Elements(1));
    w2_w3::<Flowlane>(&mut g, ECHO_CONNECTIONS);
    w2_w3::<Smoltcp>(&mut g, ECHO_CONNECTIONS);
    g.finish();

    // W4: a fixed window per stack, outside criterion (see `w4`).
    let seconds = if measuring() { 5.0 } else { 0.2 };
    if selected("w4_connection_rate/flowlane") {
        w4::<Flowlane>(&baseline, seconds);
    }
    if selected("w4_connection_rate/smoltcp") {
        w4::<Smoltcp>(&baseline, seconds);
    }

    c.final_summary();
}
