//! BENCHMARKS.md's W1–W4 on two flowlane stacks over the in-memory link and,
//! in the same run, on two smoltcp 0.14 stacks over an in-memory cable, each
//! pair polled in one thread (see `workloads.rs` for what both do).
//!
//! One criterion iteration is one operation: W1 one MiB sent and read
//! (throughput in bytes, so criterion prints GiB/s; the report turns it into
//! Gbit/s), W2/W3 one request/response pair, W4 one completed connection.
//! Each benchmark keeps its pair (and connections) from warm-up to the last
//! sample, so W1 measures a long transfer cut into samples and W4 a run of
//! several seconds; W4's pair keeps its TIME-WAIT state throughout, and its
//! failed connects and TIME-WAIT count at the end are printed and written to
//! `target/criterion/w4_connection_rate/<stack>/extra-<baseline>.json` for
//! the report.
//!
//! `cargo bench --bench pair` times everything in a few minutes;
//! `cargo bench --bench pair -- --test` runs each workload once.

#[path = "results.rs"]
mod results;
#[path = "workloads.rs"]
mod workloads;

use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use results::{baseline_name, w4_json, write_extra};
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

fn w4<N: Net>(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, baseline: &str) {
    let mut w: Option<(ConnRate<N>, Instant)> = None;
    g.bench_function(N::NAME, |b| {
        let (w, _) = w.get_or_insert_with(|| (ConnRate::new(), Instant::now()));
        b.iter_custom(|conns| timed(|| w.run(conns)))
    });
    let Some((w, built)) = w else { return };
    let s = w.stats();
    let secs = built.elapsed().as_secs_f64();
    println!(
        "w4_connection_rate/{}: {} connections in {secs:.1} s ({:.0}/s overall), \
         {} failed connects, {} in TIME-WAIT at the end",
        N::NAME,
        s.completed,
        s.completed as f64 / secs,
        s.failed,
        s.time_wait
    );
    let json = w4_json(s.completed, secs, s.failed, s.time_wait);
    write_extra("w4_connection_rate", N::NAME, baseline, &json);
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

    let mut g = group(&mut c, "w4_connection_rate");
    g.throughput(Throughput::Elements(1));
    // Equal samples in time order, so a rate that decays shows in the
    // spread rather than in a fitted slope.
    g.sampling_mode(SamplingMode::Flat);
    w4::<Flowlane>(&mut g, &baseline);
    w4::<Smoltcp>(&mut g, &baseline);
    g.finish();

    c.final_summary();
}
