//! Where the benches leave figures of their own beside criterion's results,
//! and when. Shared (by `#[path]`) between `bench/pair.rs`,
//! `bench/kernel.rs` and `bench/veth.rs`; `examples/bench_report.rs` reads
//! what they write.

// Each bench uses a different part of this module.
#![allow(dead_code)]

use std::path::PathBuf;

/// Where criterion writes (it honours CARGO_TARGET_DIR; benches run in the
/// package root).
pub fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    PathBuf::from(target).join("criterion")
}

/// Criterion only measures (and we only write figures beside its results)
/// when cargo runs the bench as a benchmark: `--bench` and no `--test`.
/// `cargo test --benches` passes neither.
pub fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// The baseline criterion saves to (`--save-baseline NAME`), else "new".
pub fn baseline_name() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--save-baseline")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "new".to_string())
}

/// Writes `json` to `<group>/<stack>/extra-<baseline>.json` beside
/// criterion's results, when measuring.
pub fn write_extra(group: &str, stack: &str, baseline: &str, json: &str) {
    let dir = criterion_dir().join(group).join(stack);
    if measuring() && std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("extra-{baseline}.json")), json);
    }
}

/// One W4 window's figures: the connections completed in it, its length,
/// failed connects, TIME-WAIT at the end, and the rate in each tenth.
pub struct W4Window {
    pub completed: u64,
    pub seconds: f64,
    pub failed: u64,
    pub time_wait: usize,
    pub rates: Vec<f64>,
}

impl W4Window {
    /// Prints the window's line (`note` after it) and writes its figures
    /// beside criterion's results, where the report reads them.
    pub fn report(&self, group: &str, stack: &str, baseline: &str, note: &str) {
        let rates: Vec<String> = self.rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{group}/{stack}: {} connections in {:.1} s ({:.0}/s; per tenth of the run: {}), \
             {} failed connects, {} in TIME-WAIT at the end{note}",
            self.completed,
            self.seconds,
            self.completed as f64 / self.seconds,
            rates.join(" "),
            self.failed,
            self.time_wait
        );
        let json = format!(
            "{{\"completed\": {}, \"seconds\": {:.3}, \"failed\": {}, \"time_wait\": {}, \"rates\": [{}]}}\n",
            self.completed,
            self.seconds,
            self.failed,
            self.time_wait,
            rates.join(", ")
        );
        write_extra(group, stack, baseline, &json);
    }
}

/// BENCHMARKS.md's W4 window: runs `w` for `seconds` of wall clock from
/// now (`run_until` gets the end of each tenth of the window in turn) and
/// returns the seconds it took and the connections per second completed in
/// each tenth, so a rate that decays shows. Not criterion samples: a
/// sample plan made in the warm-up of a rate that decays (smoltcp's linear
/// scan, Linux's TIME-WAIT) measures whichever phase it happens to hit.
pub fn fixed_window<W>(
    w: &mut W,
    seconds: f64,
    completed: impl Fn(&W) -> u64,
    mut run_until: impl FnMut(&mut W, std::time::Instant),
) -> (f64, Vec<f64>) {
    let start = std::time::Instant::now();
    let tenth = std::time::Duration::from_secs_f64(seconds / 10.0);
    let mut rates = Vec::with_capacity(10);
    let mut last = (completed(w), start);
    for i in 1..=10 {
        run_until(w, start + tenth * i);
        let now = std::time::Instant::now();
        let dt = (now - last.1).as_secs_f64().max(1e-9);
        rates.push((completed(w) - last.0) as f64 / dt);
        last = (completed(w), now);
    }
    (start.elapsed().as_secs_f64(), rates)
}

/// Criterion's filter (the first free argument), for the runs criterion
/// does not drive: `id` runs if it contains the filter.
pub fn selected(id: &str) -> bool {
    const WITH_VALUE: [&str; 10] = [
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
    ];
    let a: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < a.len() {
        if WITH_VALUE.contains(&a[i].as_str()) {
            i += 2;
            continue;
        }
        if !a[i].starts_with('-') {
            return id.contains(a[i].as_str());
        }
        i += 1;
    }
    true
}
