//! Integrity under impairment: for many seeds and each impairment (loss 1%,
//! 5%, 10%, reordering, duplication, corruption, jitter, and all at once),
//! 4 MiB each way between two stacks over the in-memory link, SHA-256 equal
//! on both ends, both sides close cleanly, within a virtual-time bound.
//!
//! `FLOWLANE_SEEDS=N` sets the seeds per impairment (default 200; raise it
//! for a longer run). A failure prints its seed and impairment;
//! `FLOWLANE_SEED=S FLOWLANE_IMPAIRMENT=name cargo test --test impairment`
//! re-runs exactly that one.

mod pairkit;

use flowlane::api::pair::Pair;
use flowlane::api::{Shutdown, State};
use flowlane::phy::{Link, LinkConfig};
use flowlane::time::Duration;
use pairkit::*;

const SIZE: usize = 4 << 20;
/// Virtual time allowed for one run (transfer and close); a stall fails.
const BOUND: Duration = Duration::from_secs(600);

fn impairments() -> Vec<(&'static str, LinkConfig)> {
    let base = LinkConfig::default().with_delay(Duration::from_millis(1));
    let ms = Duration::from_millis;
    vec![
        ("loss1", base.with_loss(0.01)),
        ("loss5", base.with_loss(0.05)),
        ("loss10", base.with_loss(0.10)),
        ("reorder", base.with_reorder(0.05, ms(3))),
        ("duplicate", base.with_duplicate(0.05)),
        ("corrupt", base.with_corrupt(0.02)),
        ("jitter", base.with_jitter(ms(4))),
        (
            "all",
            base.with_loss(0.03)
                .with_reorder(0.03, ms(3))
                .with_duplicate(0.02)
                .with_corrupt(0.01)
                .with_jitter(ms(2)),
        ),
    ]
}

/// One run; Err describes what went wrong.
fn run(seed: u64, link: &LinkConfig) -> Result<Duration, String> {
    let (mut a, mut b) = Pair::configs();
    // Odd seeds run with the tail loss probe (RFC 8985 §7, off by default).
    for c in [&mut a, &mut b] {
        c.endpoint.tcp.tail_loss_probe = seed % 2 == 1;
    }
    let mut p = Pair::with(Link::new(*link, seed), a, b);
    let start = p.now;
    let (c, s, _) = connect(&mut p);
    let mut up = Flow::new(random_bytes(seed.wrapping_mul(2), SIZE));
    let mut down = Flow::new(random_bytes(seed.wrapping_mul(2) + 1, SIZE));
    let moved = p.run_until(BOUND, |p| {
        pump(p, true, c, s, &mut up);
        pump(p, false, s, c, &mut down);
        up.done() && down.done()
    });
    if !moved {
        return Err(format!(
            "stalled at {:?}: up {}/{} down {}/{}; A {:?} B {:?}",
            p.now,
            up.received.len(),
            SIZE,
            down.received.len(),
            SIZE,
            p.a.tcp.info(c),
            p.b.tcp.info(s)
        ));
    }
    if sha(&up.received) != sha(&up.data) || sha(&down.received) != sha(&down.data) {
        return Err("SHA-256 mismatch".into());
    }
    p.a.tcp
        .shutdown(c, Shutdown::Write)
        .map_err(|e| format!("{e:?}"))?;
    p.b.tcp
        .shutdown(s, Shutdown::Write)
        .map_err(|e| format!("{e:?}"))?;
    let mut buf = [0u8; 16];
    let closed = p.run_until(BOUND, |p| {
        let eof_a = p.a.tcp.recv(c, &mut buf) == Ok(0);
        let eof_b = p.b.tcp.recv(s, &mut buf) == Ok(0);
        let done = |st: State| matches!(st, State::Closed | State::TimeWait);
        eof_a && eof_b && done(p.a.tcp.state(c).unwrap()) && done(p.b.tcp.state(s).unwrap())
    });
    if !closed {
        return Err(format!(
            "close stalled: A {:?} B {:?}",
            p.a.tcp.state(c),
            p.b.tcp.state(s)
        ));
    }
    for (side, tcp, h) in [("A", &mut p.a.tcp, c), ("B", &mut p.b.tcp, s)] {
        if let Some(e) = tcp.take_error(h).unwrap() {
            return Err(format!("{side} failed: {e:?}"));
        }
    }
    Ok(p.now - start)
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("FLOWLANE_SEED") {
        return vec![s.parse().expect("FLOWLANE_SEED is a number")];
    }
    let n: u64 = std::env::var("FLOWLANE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    (1..=n).collect()
}

fn check(name: &str) {
    if let Ok(only) = std::env::var("FLOWLANE_IMPAIRMENT") {
        if only != name {
            return;
        }
    }
    let link = impairments()
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("known impairment")
        .1;
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for seed in seeds() {
        match run(seed, &link) {
            Ok(t) => slowest = slowest.max(t),
            Err(e) => failures.push(format!(
                "FLOWLANE_SEED={seed} FLOWLANE_IMPAIRMENT={name}: {e}"
            )),
        }
    }
    eprintln!("{name}: slowest run {slowest:?} of virtual time");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn loss_1_percent() {
    check("loss1");
}
#[test]
fn loss_5_percent() {
    check("loss5");
}
#[test]
fn loss_10_percent() {
    check("loss10");
}
#[test]
fn reordering() {
    check("reorder");
}
#[test]
fn duplication() {
    check("duplicate");
}
#[test]
fn corruption() {
    check("corrupt");
}
#[test]
fn jitter() {
    check("jitter");
}
#[test]
fn all_impairments_together() {
    check("all");
}
