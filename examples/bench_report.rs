//! Prints the benchmark table README.md carries: each workload of
//! BENCHMARKS.md, flowlane, each peer measured in the same run, and the
//! ratios, from criterion's results.
//!
//!     cargo run --release --example bench_report [-- BASELINE...]
//!
//! Reads `target/criterion/<workload>/<stack>/<baseline>/estimates.json`
//! (criterion's median time per iteration) with its `benchmark.json` (the
//! bytes or operations per iteration), for each baseline named (default
//! `new`, the last run), and prints the median over the baselines. With
//! `bench/pair.rs`'s `--save-baseline runN` runs that is a median of N runs.
//! W4 is not a criterion figure: the pair and kernel benches run it as a
//! fixed 5 s window from a fresh pair (BENCHMARKS.md's definition) and
//! write its connections, seconds, failed connects, TIME-WAIT count and
//! per-tenth rates to `extra-*.json` beside criterion's results.
//!
//! A second table does the same for `bench/veth.rs` (groups `veth_*`):
//! flowlane on AF_XDP at both ends of a veth, Linux at both ends, and a
//! Linux client against flowlane's server, each side on its own core, with
//! the ratios to Linux. Its W4 rows (a 5 s and a 30 s window) are completed
//! connections over the run's seconds from
//! `veth_w4_*/<pairing>/extra-*.json`, and W2's p50/p99 come from
//! `veth_w2_echo_latency/<pairing>/extra-*.json`.
//!
//! Then two more tables: the wire micro benches of `bench/wire.rs` (checksum,
//! TCP parse and emit; flowlane against a reference loop and smoltcp, from
//! the same baselines, or from `new` when those baselines have none), and
//! memory per connection and per TIME-WAIT record from the
//! `flowlane-memory.json` that `tests/scale.rs` writes into the target
//! directory (`cargo test --release --test scale`), beside Linux's figures
//! from BENCHMARKS.md and the targets.

use std::path::{Path, PathBuf};

use serde_json::Value;

struct Workload {
    group: &'static str,
    name: &'static str,
    unit: &'static str,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        group: "w1_bulk",
        name: "W1 bulk",
        unit: "Gbit/s",
    },
    Workload {
        group: "w2_echo_latency",
        name: "W2 echo latency",
        unit: "round trips/s",
    },
    Workload {
        group: "w3_echo_throughput",
        name: "W3 echo throughput",
        unit: "pairs/s",
    },
    Workload {
        group: "w4_connection_rate",
        name: "W4 connection rate",
        unit: "connections/s",
    },
];

/// Peers, in the table's order; a column appears only if some figure exists.
const PEERS: [(&str, &str); 2] = [("smoltcp", "smoltcp 0.14"), ("linux", "Linux loopback")];

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .unwrap_or_else(|| "target".into())
        .into()
}

fn criterion_dir() -> PathBuf {
    target_dir().join("criterion")
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The figure of one run: Gbit/s for byte throughput, operations per second
/// otherwise, from the median time per iteration.
fn figure(dir: &Path) -> Option<f64> {
    let estimates = read_json(&dir.join("estimates.json"))?;
    let ns = estimates["median"]["point_estimate"].as_f64()?;
    let bench = read_json(&dir.join("benchmark.json"))?;
    let throughput = &bench["throughput"];
    if let Some(bytes) = throughput["Bytes"].as_f64() {
        Some(bytes * 8.0 / ns)
    } else {
        let ops = throughput["Elements"].as_f64().unwrap_or(1.0);
        Some(ops * 1e9 / ns)
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `1234567.0` as `1 234 567`, Gbit/s with one decimal.
fn show(x: f64, unit: &str) -> String {
    if unit == "Gbit/s" {
        return format!("{x:.1}");
    }
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn main() {
    let mut baselines: Vec<String> = std::env::args().skip(1).collect();
    if baselines.is_empty() {
        baselines.push("new".to_string());
    }
    let root = criterion_dir();
    let runs = |group: &str, stack: &str| -> Vec<f64> {
        if group == "w4_connection_rate" {
            // A fixed window, not criterion samples (`results::fixed_window`).
            return window_rates(&extras(&root, group, stack, &baselines));
        }
        baselines
            .iter()
            .filter_map(|b| figure(&root.join(group).join(stack).join(b)))
            .collect()
    };
    let peers: Vec<(&str, &str)> = PEERS
        .into_iter()
        .filter(|(id, _)| WORKLOADS.iter().any(|w| !runs(w.group, id).is_empty()))
        .collect();

    println!(
        "Medians of {} run(s) ({}), criterion median per run (W4: its fixed window).\n",
        baselines.len(),
        baselines.join(", ")
    );
    let mut header = "| workload | unit | flowlane |".to_string();
    let mut rule = "|---|---|---:|".to_string();
    for (_, name) in &peers {
        header += &format!(" {name} | flowlane / {name} |");
        rule += "---:|---:|";
    }
    println!("{header}\n{rule}");
    let mut spread = Vec::new();
    for w in &WORKLOADS {
        let fl_runs = runs(w.group, "flowlane");
        let fl = median(fl_runs.clone());
        let cell = |x: Option<f64>| x.map_or("–".to_string(), |x| show(x, w.unit));
        let mut row = format!("| {} | {} | {} |", w.name, w.unit, cell(fl));
        spread.push(format!(
            "{} flowlane: {}",
            w.group,
            fl_runs
                .iter()
                .map(|x| show(*x, w.unit))
                .collect::<Vec<_>>()
                .join(" / ")
        ));
        for (id, _) in &peers {
            let peer_runs = runs(w.group, id);
            let peer = median(peer_runs.clone());
            let ratio = match (fl, peer) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "–".to_string(),
            };
            row += &format!(" {} | {ratio} |", cell(peer));
            if !peer_runs.is_empty() {
                spread.push(format!(
                    "{} {id}: {}",
                    w.group,
                    peer_runs
                        .iter()
                        .map(|x| show(*x, w.unit))
                        .collect::<Vec<_>>()
                        .join(" / ")
                ));
            }
        }
        println!("{row}");
    }

    println!("\nW4 windows, each from a fresh pair (median over runs):\n");
    println!(
        "| stack | connections | seconds | failed connects | TIME-WAIT at the end | first tenth, /s | last tenth, /s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for stack in ["flowlane", "smoltcp", "linux"] {
        let extras = extras(&root, "w4_connection_rate", stack, &baselines);
        if extras.is_empty() {
            continue;
        }
        let field = |k: &str| median(extras.iter().filter_map(|e| e[k].as_f64()).collect());
        let int = |k: &str| field(k).map_or("–".to_string(), |x| show(x, ""));
        let tenth = |last: bool| {
            let rates = extras.iter().filter_map(|e| {
                let r = e["rates"].as_array()?;
                let x = if last { r.last() } else { r.first() };
                x?.as_f64()
            });
            median(rates.collect()).map_or("–".to_string(), |x| show(x, ""))
        };
        println!(
            "| {stack} | {} | {} | {} | {} | {} | {} |",
            int("completed"),
            field("seconds").map_or("–".to_string(), |x| format!("{x:.1}")),
            int("failed"),
            int("time_wait"),
            tenth(false),
            tenth(true)
        );
    }

    micro_table(&root, &baselines);
    memory_table(&target_dir().join("flowlane-memory.json"));

    println!("\nEach run (flowlane and peers), in baseline order:\n");
    for line in spread {
        println!("- {line}");
    }

    veth_table(&root, &baselines);
}

/// The veth rows: (criterion group, workload, unit, target vs Linux).
const VETH_WORKLOADS: [(&str, &str, &str, &str); 4] = [
    (
        "veth_w2_echo_latency",
        "W2 echo latency, busy-polling",
        "round trips/s",
        "≥ 2×",
    ),
    (
        "veth_w3_echo_throughput",
        "W3 echo throughput",
        "pairs/s",
        "≥ 3×",
    ),
    (
        "veth_w4_connection_rate",
        "W4 connection rate, 5 s",
        "connections/s",
        "–",
    ),
    (
        "veth_w4_30s",
        "W4 connection rate, 30 s",
        "connections/s",
        "≥ 20×, 0 failed",
    ),
];

/// Pairings of the veth bench, in the table's order.
const VETH_PAIRINGS: [(&str, &str); 3] = [
    ("flowlane", "flowlane ↔ flowlane (AF_XDP)"),
    ("linux", "Linux ↔ Linux"),
    (
        "linux_client_flowlane_server",
        "Linux client → flowlane server",
    ),
];

/// The extra-*.json records of one W4 group and stack or pairing.
fn extras(root: &Path, group: &str, stack: &str, baselines: &[String]) -> Vec<Value> {
    baselines
        .iter()
        .filter_map(|b| read_json(&root.join(group).join(stack).join(format!("extra-{b}.json"))))
        .collect()
}

/// Connections per second of each fixed W4 window.
fn window_rates(extras: &[Value]) -> Vec<f64> {
    extras
        .iter()
        .filter_map(|e| Some(e["completed"].as_f64()? / e["seconds"].as_f64()?))
        .collect()
}

fn veth_table(root: &Path, baselines: &[String]) {
    let runs = |group: &str, stack: &str| -> Vec<f64> {
        if group.starts_with("veth_w4") {
            window_rates(&extras(root, group, stack, baselines))
        } else {
            baselines
                .iter()
                .filter_map(|b| figure(&root.join(group).join(stack).join(b)))
                .collect()
        }
    };
    if VETH_WORKLOADS
        .iter()
        .all(|(g, ..)| VETH_PAIRINGS.iter().all(|(p, _)| runs(g, p).is_empty()))
    {
        return;
    }
    println!("\nveth, each side on its own core (`bench/veth.rs`; medians over runs):\n");
    let [(_, fl_name), (_, linux_name), (_, mixed_name)] = VETH_PAIRINGS;
    println!(
        "| workload | unit | {fl_name} | {linux_name} | flowlane / Linux | target | {mixed_name} | {mixed_name} / Linux |"
    );
    println!("|---|---|---:|---:|---:|---|---:|---:|");
    let mut spread = Vec::new();
    for (group, name, unit, target) in VETH_WORKLOADS {
        let figs: Vec<Option<f64>> = VETH_PAIRINGS
            .iter()
            .map(|(p, _)| {
                let r = runs(group, p);
                if !r.is_empty() {
                    spread.push(format!(
                        "{group} {p}: {}",
                        r.iter()
                            .map(|x| show(*x, unit))
                            .collect::<Vec<_>>()
                            .join(" / ")
                    ));
                }
                median(r)
            })
            .collect();
        let cell = |x: Option<f64>| x.map_or("–".to_string(), |x| show(x, unit));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "–".to_string(),
        };
        println!(
            "| {name} | {unit} | {} | {} | {} | {target} | {} | {} |",
            cell(figs[0]),
            cell(figs[1]),
            ratio(figs[0], figs[1]),
            cell(figs[2]),
            ratio(figs[2], figs[1]),
        );
    }

    let p = |stack: &str, k: &str| {
        median(
            extras(root, "veth_w2_echo_latency", stack, baselines)
                .iter()
                .filter_map(|e| e[k].as_f64())
                .collect(),
        )
        .map_or("–".to_string(), |x| format!("{x:.1}"))
    };
    println!(
        "\nW2 round trip p50 / p99 µs (every round trip, median over runs): {}",
        VETH_PAIRINGS
            .iter()
            .map(|(id, name)| format!("{name} {} / {}", p(id, "p50_us"), p(id, "p99_us")))
            .collect::<Vec<_>>()
            .join("; ")
    );

    println!("\nveth W4 runs (median over runs; failed connects counted per attempt):\n");
    println!("| run | pairing | connections | seconds | failed connects | TIME-WAIT at the end |");
    println!("|---|---|---:|---:|---:|---:|");
    for (group, label) in [
        ("veth_w4_connection_rate", "W4 5 s"),
        ("veth_w4_30s", "W4 30 s"),
    ] {
        for (stack, pairing) in VETH_PAIRINGS {
            let e = extras(root, group, stack, baselines);
            if e.is_empty() {
                continue;
            }
            let field = |k: &str| median(e.iter().filter_map(|x| x[k].as_f64()).collect());
            let int = |k: &str| field(k).map_or("–".to_string(), |x| show(x, ""));
            println!(
                "| {label} | {pairing} | {} | {} | {} | {} |",
                int("completed"),
                field("seconds").map_or("–".to_string(), |x| format!("{x:.1}")),
                int("failed"),
                int("time_wait")
            );
        }
    }

    println!("\nEach veth run, in baseline order:\n");
    for line in spread {
        println!("- {line}");
    }
}

/// One row of the micro table: a criterion group and parameter, and whether
/// the figure is bytes per nanosecond (GB/s) or nanoseconds per iteration.
struct Micro {
    group: &'static str,
    param: &'static str,
    name: &'static str,
    gbps: bool,
}

const MICRO: [Micro; 7] = [
    Micro {
        group: "wire_checksum",
        param: "20",
        name: "checksum, 20 B",
        gbps: true,
    },
    Micro {
        group: "wire_checksum",
        param: "64",
        name: "checksum, 64 B",
        gbps: true,
    },
    Micro {
        group: "wire_checksum",
        param: "1460",
        name: "checksum, 1460 B",
        gbps: true,
    },
    Micro {
        group: "wire_checksum",
        param: "9000",
        name: "checksum, 9000 B",
        gbps: true,
    },
    Micro {
        group: "wire_tcp_parse",
        param: "timestamps",
        name: "parse Ethernet+IPv4+TCP, TS + 64 B",
        gbps: false,
    },
    Micro {
        group: "wire_tcp_parse",
        param: "sack",
        name: "parse Ethernet+IPv4+TCP, TS + 2 SACK blocks",
        gbps: false,
    },
    Micro {
        group: "wire_tcp_emit",
        param: "timestamps_64B",
        name: "emit Ethernet+IPv4+TCP, TS + 64 B",
        gbps: false,
    },
];

/// Criterion's median time per iteration, in nanoseconds.
fn median_ns(dir: &Path) -> Option<f64> {
    read_json(&dir.join("estimates.json"))?["median"]["point_estimate"].as_f64()
}

/// `bench/wire.rs`'s groups: flowlane against the plain reference loop
/// (checksum only) and smoltcp 0.14. Ratios are speed ratios: how many
/// times faster flowlane is.
fn micro_table(root: &Path, baselines: &[String]) {
    println!("\nWire micro benches (`cargo bench --bench wire`):\n");
    let has = |b: &String| {
        root.join("wire_checksum/flowlane/1460")
            .join(b)
            .join("estimates.json")
            .exists()
    };
    let mut used: Vec<String> = baselines.iter().filter(|b| has(b)).cloned().collect();
    if used.is_empty() && has(&"new".to_string()) {
        used.push("new".to_string());
    }
    if used.is_empty() {
        println!("not measured: run `cargo bench --bench wire`");
        return;
    }
    let ns = |m: &Micro, stack: &str| -> Option<f64> {
        median(
            used.iter()
                .filter_map(|b| median_ns(&root.join(m.group).join(stack).join(m.param).join(b)))
                .collect(),
        )
    };
    println!(
        "Medians of {} run(s) ({}); ratio = how many times faster flowlane is.\n",
        used.len(),
        used.join(", ")
    );
    println!(
        "| micro bench | unit | flowlane | reference loop | flowlane / reference | \
         smoltcp 0.14 | flowlane / smoltcp |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for m in &MICRO {
        let bytes: f64 = m.param.parse().unwrap_or(0.0);
        let cell = |t: Option<f64>| match t {
            Some(t) if m.gbps => format!("{:.1}", bytes / t),
            Some(t) => format!("{t:.1}"),
            None => "–".to_string(),
        };
        let ratio = |fl: Option<f64>, peer: Option<f64>| match (fl, peer) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}×", b / a),
            _ => "–".to_string(),
        };
        let fl = ns(m, "flowlane");
        let reference = ns(m, "reference");
        let smol = ns(m, "smoltcp");
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            m.name,
            if m.gbps { "GB/s" } else { "ns per frame" },
            cell(fl),
            cell(reference),
            ratio(fl, reference),
            cell(smol),
            ratio(fl, smol)
        );
    }
    // The spread: each run's own ratio, flowlane and peer from one run.
    println!("\nEach run, flowlane / smoltcp (flowlane / reference for the checksum):\n");
    for m in &MICRO {
        let per_run: Vec<String> = used
            .iter()
            .map(|b| {
                let t =
                    |stack: &str| median_ns(&root.join(m.group).join(stack).join(m.param).join(b));
                let fl = t("flowlane");
                let smol = t("smoltcp").zip(fl).map(|(p, f)| format!("{:.2}", p / f));
                let reference = t("reference").zip(fl).map(|(p, f)| format!("{:.2}", p / f));
                match (smol, reference) {
                    (Some(s), Some(r)) => format!("{s} ({r})"),
                    (Some(s), None) => s,
                    _ => "–".to_string(),
                }
            })
            .collect();
        println!("- {}: {}", m.name, per_run.join(" / "));
    }
}

/// Linux's figures from BENCHMARKS.md (9 000 loopback connections).
const LINUX_IDLE_BYTES: f64 = 4000.0;
const LINUX_TIME_WAIT_BYTES: f64 = 256.0;

/// Memory per connection from `tests/scale.rs`'s JSON, beside Linux and the
/// targets (BENCHMARKS.md: a million idle connections in under 1 GiB, a
/// TIME-WAIT record at most 64 bytes).
fn memory_table(path: &Path) {
    println!("\nMemory (`cargo test --release --test scale`):\n");
    let Some(m) = read_json(path) else {
        println!(
            "not measured: run `cargo test --release --test scale` (writes {})",
            path.display()
        );
        return;
    };
    let (Some(n), Some(idle)) = (
        m["connections"].as_f64(),
        m["idle_established_bytes_per_connection_per_side"].as_f64(),
    ) else {
        println!("{} lacks a field; run the scale test again", path.display());
        return;
    };
    println!(
        "Measured at {} connections on {} (resident memory growth, both stacks, every \
         table and allocator overhead included).\n",
        show(n, ""),
        m["date"].as_str().unwrap_or("an unknown date")
    );
    let million = idle * 1e6 / (1u64 << 30) as f64;
    let linux_million = LINUX_IDLE_BYTES * 1e6 / (1u64 << 30) as f64;
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    println!("| figure | flowlane | Linux (BENCHMARKS.md) | Linux / flowlane | target | met |");
    println!("|---|---:|---:|---:|---|---|");
    println!(
        "| idle established connection, bytes per connection per side | {idle:.0} | {} | \
         {:.1}× | – | – |",
        show(LINUX_IDLE_BYTES, ""),
        LINUX_IDLE_BYTES / idle
    );
    println!(
        "| one million idle established connections, one stack | {million:.2} GiB | \
         {linux_million:.2} GiB | {:.1}× | under 1 GiB | {} |",
        LINUX_IDLE_BYTES / idle,
        met(million < 1.0)
    );
    // The scale test writes the idle figures first: without this one it
    // stopped before every connection reached TIME-WAIT.
    match m["time_wait_bytes_per_record"].as_f64() {
        Some(tw) => println!(
            "| TIME-WAIT record, bytes (table included) | {tw:.1} | \
             {LINUX_TIME_WAIT_BYTES:.0} | {:.1}× | at most 64 B | {} |",
            LINUX_TIME_WAIT_BYTES / tw,
            met(tw <= 64.0)
        ),
        None => println!(
            "| TIME-WAIT record, bytes (table included) | not measured (the scale test \
             stopped before its close phase ended) | {LINUX_TIME_WAIT_BYTES:.0} | – | \
             at most 64 B | – |"
        ),
    }
    if let Some(size) = m["time_wait_record_size"].as_u64() {
        println!(
            "\n(The TIME-WAIT record itself is {size} B; the rest is the ring and hash index.)"
        );
    }
}
