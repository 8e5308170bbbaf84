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
//! W4's failed connects and TIME-WAIT count come from the `extra-*.json`
//! files the pair bench writes beside criterion's.
//!
//! A second table does the same for `bench/veth.rs` (groups `veth_*`):
//! flowlane on AF_XDP at both ends of a veth, Linux at both ends, and a
//! Linux client against flowlane's server, each side on its own core, with
//! the ratios to Linux. Its W4 rows (a 5 s and a 30 s window) are completed
//! connections over the run's seconds from
//! `veth_w4_*/<pairing>/extra-*.json`, and W2's p50/p99 come from
//! `veth_w2_echo_latency/<pairing>/extra-*.json`.

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

fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    PathBuf::from(target).join("criterion")
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
        "Medians of {} run(s) ({}), criterion median per run.\n",
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

    println!("\nW4 at the end of each pair's run (median over runs):\n");
    println!("| stack | connections | seconds | failed connects | TIME-WAIT at the end |");
    println!("|---|---:|---:|---:|---:|");
    for stack in ["flowlane", "smoltcp", "linux"] {
        let extras: Vec<Value> = baselines
            .iter()
            .filter_map(|b| {
                read_json(
                    &root
                        .join("w4_connection_rate")
                        .join(stack)
                        .join(format!("extra-{b}.json")),
                )
            })
            .collect();
        if extras.is_empty() {
            continue;
        }
        let field = |k: &str| median(extras.iter().filter_map(|e| e[k].as_f64()).collect());
        let int = |k: &str| field(k).map_or("–".to_string(), |x| show(x, ""));
        println!(
            "| {stack} | {} | {} | {} | {} |",
            int("completed"),
            field("seconds").map_or("–".to_string(), |x| format!("{x:.1}")),
            int("failed"),
            int("time_wait")
        );
    }

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

/// The extra-*.json records of one veth W4 group and pairing.
fn extras(root: &Path, group: &str, stack: &str, baselines: &[String]) -> Vec<Value> {
    baselines
        .iter()
        .filter_map(|b| read_json(&root.join(group).join(stack).join(format!("extra-{b}.json"))))
        .collect()
}

fn veth_table(root: &Path, baselines: &[String]) {
    let runs = |group: &str, stack: &str| -> Vec<f64> {
        if group.starts_with("veth_w4") {
            extras(root, group, stack, baselines)
                .iter()
                .filter_map(|e| Some(e["completed"].as_f64()? / e["seconds"].as_f64()?))
                .collect()
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
