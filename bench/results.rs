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

/// W4's figures at the end of a run, as the report reads them.
pub fn w4_json(completed: u64, seconds: f64, failed: u64, time_wait: usize) -> String {
    format!(
        "{{\"completed\": {completed}, \"seconds\": {seconds:.3}, \"failed\": {failed}, \"time_wait\": {time_wait}}}\n"
    )
}
