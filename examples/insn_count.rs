//! Runs one workload of `bench/pair.rs` on one stack for a given number of
//! operations, for `scripts/callgrind.sh` to count instructions:
//!
//!     insn_count <w1|w2|w3|w4> <flowlane|smoltcp> <operations>
//!
//! The clock is virtual (each step advances it by about what a step takes
//! for real: 1 µs, 50 µs in W4, where a step serves 32 connections), so the
//! count does not depend on how fast the machine or valgrind runs. The
//! script runs N and 2N operations and divides the difference by N: setup
//! and warm-up cancel.
//!
//! With a duration instead (`insn_count w4 smoltcp 5s`) it runs on the wall
//! clock for that long and prints operations per second, second by second
//! (W4's decay, as BENCHMARKS.md describes smoltcp's).

#[path = "../bench/workloads.rs"]
mod workloads;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use workloads::{
    Bulk, ConnRate, Echo, Flowlane, Net, Smoltcp, ECHO_CONNECTIONS, VIRTUAL_STEP_MICROS,
};

/// Operations run before the counted ones (BENCHMARKS.md's W2 warm-up; in
/// W4 every slot cycles twice).
fn warm_up(workload: &str) -> u64 {
    if workload == "w4" {
        64
    } else {
        1000
    }
}

enum Run {
    Count(u64),
    For(Duration),
}

trait Workload {
    fn run(&mut self, ops: u64);
    /// W4's failed connects and TIME-WAIT count.
    fn extra(&self) -> String {
        String::new()
    }
}

impl<N: Net> Workload for Bulk<N> {
    fn run(&mut self, ops: u64) {
        Bulk::run(self, ops)
    }
}

impl<N: Net> Workload for Echo<N> {
    fn run(&mut self, ops: u64) {
        Echo::run(self, ops)
    }
}

impl<N: Net> Workload for ConnRate<N> {
    fn run(&mut self, ops: u64) {
        ConnRate::run(self, ops)
    }
    fn extra(&self) -> String {
        let s = self.stats();
        format!(
            " ({} completed since the start), {} failed connects, {} in TIME-WAIT",
            s.completed, s.failed, s.time_wait
        )
    }
}

fn build<N: Net + 'static>(workload: &str) -> Box<dyn Workload> {
    match workload {
        "w1" => Box::new(Bulk::<N>::new()),
        "w2" => Box::new(Echo::<N>::new(1)),
        "w3" => Box::new(Echo::<N>::new(ECHO_CONNECTIONS)),
        "w4" => Box::new(ConnRate::<N>::new()),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: insn_count <w1|w2|w3|w4> <flowlane|smoltcp> <operations | SECONDSs>");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [workload, stack, amount] = args.as_slice() else {
        usage()
    };
    let run = match amount.strip_suffix('s') {
        Some(secs) => Run::For(Duration::from_secs(
            secs.parse().unwrap_or_else(|_| usage()),
        )),
        None => Run::Count(amount.parse().unwrap_or_else(|_| usage())),
    };
    if let Run::Count(_) = run {
        let step = if workload == "w4" { 50 } else { 1 };
        VIRTUAL_STEP_MICROS.store(step, Ordering::Relaxed);
    }
    let mut w = match stack.as_str() {
        "flowlane" => build::<Flowlane>(workload),
        "smoltcp" => build::<Smoltcp>(workload),
        _ => usage(),
    };
    match run {
        Run::Count(ops) => {
            let warm = warm_up(workload);
            w.run(warm);
            w.run(ops);
            println!(
                "{workload} {stack}: {ops} operations after {warm} warm-up{}",
                w.extra()
            );
        }
        Run::For(d) => {
            // Small batches, so a second's boundary is close to exact.
            let batch = if workload == "w1" { 1 } else { 64 };
            let start = Instant::now();
            let mut second = 1;
            let (mut ops, mut at_second) = (0u64, 0u64);
            while start.elapsed() < d {
                w.run(batch);
                ops += batch;
                if start.elapsed() >= Duration::from_secs(second) {
                    println!(
                        "{workload} {stack}: second {second}: {}/s{}",
                        ops - at_second,
                        w.extra()
                    );
                    at_second = ops;
                    second += 1;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{workload} {stack}: {ops} in {secs:.2} s = {:.0}/s{}",
                ops as f64 / secs,
                w.extra()
            );
        }
    }
}
