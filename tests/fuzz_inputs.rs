//! The fuzz harnesses (`tests/fuzzkit`, `fuzz/`) on stable, in CI: seeded
//! random op sequences; the seed corpus (`fuzz/seeds/<target>/`, what
//! libFuzzer's coverage guidance found, minimized with `cargo fuzz cmin`),
//! turned into ops by `arbitrary` as libFuzzer does; and any input that
//! once found a fault (`fuzz/regressions/<target>/`). A run of
//! `cargo +nightly fuzz run frames` explores far more; these keep the
//! harnesses working and what they found covered.

mod framekit;
mod fuzzkit;
mod wirekit;

use arbitrary::{Arbitrary, Unstructured};
use flowlane::rand::Rng;
use fuzzkit::{Op, Target};

/// The ops libFuzzer's `fuzz_target!(|ops: Vec<Op>|)` makes of `bytes`.
fn ops_from(bytes: &[u8]) -> Vec<Op> {
    Vec::<Op>::arbitrary_take_rest(Unstructured::new(bytes)).unwrap_or_default()
}

/// The inputs kept in `fuzz/<kind>/<target>/`, if any.
fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// A random op, most of them segments of A's connection near B's window
/// (what libFuzzer's coverage guidance finds its way to).
fn random_op(rng: &mut Rng) -> Op {
    let bytes = |rng: &mut Rng, n: u64| -> Vec<u8> {
        let len = rng.gen_range(0, n) as usize;
        (0..len).map(|_| rng.gen_range(0, 256) as u8).collect()
    };
    // Half of the offsets exact (what a handshake or in-order data needs).
    let small = |rng: &mut Rng| {
        if rng.gen_range(0, 2) == 0 {
            0
        } else {
            rng.gen_range(0, 3000) as i16 - 1000
        }
    };
    let which = rng.gen_range(0, 8) as u8;
    match rng.gen_range(0, 18) {
        0..=8 => {
            let target = match rng.gen_range(0, 10) {
                // A few ports, so that handshakes can complete.
                0 | 1 => Target::Listener(rng.gen_range(1000, 1004) as u16),
                2 => Target::Closed(rng.gen_range(0, 65536) as u16),
                3 | 4 => Target::Active(rng.gen_range(0, 4) as u8),
                _ => Target::Conn,
            };
            let mut options = [0u8; 40];
            for b in options.iter_mut() {
                *b = rng.gen_range(0, 256) as u8;
            }
            // Mostly the ordinary flags: ACK with PSH, FIN, RST or SYN.
            let flags = if rng.gen_range(0, 4) == 0 {
                rng.gen_range(0, 256) as u8
            } else {
                [0x10, 0x18, 0x11, 0x14, 0x04, 0x02, 0x12][rng.gen_range(0, 7) as usize]
            };
            Op::Segment {
                target,
                flags,
                seq: small(rng),
                ack: small(rng),
                window: rng.gen_range(0, 65536) as u16,
                options,
                options_len: [0, 0, 12, rng.gen_range(0, 41) as u8][rng.gen_range(0, 4) as usize],
                payload: [0, 1, 100, 1460][rng.gen_range(0, 4) as usize],
                urgent: rng.gen_range(0, 65536) as u16,
                bad_checksum: rng.gen_range(0, 16) == 0,
            }
        }
        9 => Op::Ip {
            protocol: [1, 6, 17, rng.gen_range(0, 256) as u8][rng.gen_range(0, 4) as usize],
            body: bytes(rng, 80),
        },
        10 => Op::Arp {
            request: rng.gen_range(0, 2) == 0,
            sender_last: rng.gen_range(0, 4) as u8,
            target_last: rng.gen_range(0, 4) as u8,
            mac_last: rng.gen_range(0, 4) as u8,
        },
        11 => Op::Raw(bytes(rng, 120)),
        12 => Op::Advance {
            ms: [1, 40, 200, 1000, 30_000][rng.gen_range(0, 5) as usize],
        },
        13 => Op::Read {
            which,
            len: rng.gen_range(0, 5000) as u16,
        },
        14 => Op::Write {
            which,
            len: rng.gen_range(0, 5000) as u16,
        },
        15 => Op::Connect {
            port: rng.gen_range(2000, 2004) as u16,
        },
        16 => Op::Accept,
        _ => {
            if rng.gen_range(0, 2) == 0 {
                Op::Shutdown { which }
            } else {
                Op::Close { which }
            }
        }
    }
}

#[test]
fn random_op_sequences_keep_the_stack_sound() {
    let mut rng = Rng::new(0x5eed_f022);
    let (mut sent, mut accepted, mut opened) = (0, 0, 0);
    for _ in 0..256 {
        let n = rng.gen_range(1, 120) as usize;
        let input: Vec<Op> = (0..n).map(|_| random_op(&mut rng)).collect();
        let w = fuzzkit::run(&input);
        sent += w.sent;
        accepted += w.accepted;
        opened += w.opened();
    }
    println!("{accepted} accepted, {opened} opened");
    // Handshakes completed on the listener, and B opened connections.
    assert!(
        accepted > 10 && opened > 10,
        "{accepted} accepted, {opened} opened"
    );
    println!("{sent} frames from B");
    // B answered (ACKs, RSTs, data): the ops reached the stack.
    assert!(sent > 5000, "{sent} frames");
}

#[test]
fn segments_near_the_window_reach_the_connection() {
    // A hand-made input: data in order, an old duplicate, a FIN, then the
    // application reads and closes. B must answer each.
    let seg = |seq: i16, flags: u8, payload: u16| Op::Segment {
        target: Target::Conn,
        flags,
        seq,
        ack: 0,
        window: 65535,
        options: [0; 40],
        options_len: 0,
        payload,
        urgent: 0,
        bad_checksum: false,
    };
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const FIN: u8 = 0x01;
    let input = vec![
        seg(0, ACK | PSH, 100),
        seg(0, ACK | PSH, 100),
        seg(100, ACK | FIN, 0),
        Op::Read {
            which: 0,
            len: 4096,
        },
        Op::Close { which: 0 },
        Op::Advance { ms: 1000 },
    ];
    let w = fuzzkit::run(&input);
    assert!(w.sent >= 4, "{} frames", w.sent);
}

#[test]
fn a_syn_then_an_ack_at_offset_zero_completes_a_handshake() {
    let seg = |flags: u8| Op::Segment {
        target: Target::Listener(1001),
        flags,
        seq: 0,
        ack: 0,
        window: 65535,
        options: [0; 40],
        options_len: 0,
        payload: 0,
        urgent: 0,
        bad_checksum: false,
    };
    // SYN, then ACK (B's SYN-ACK is what the offsets now count from).
    let w = fuzzkit::run(&[seg(0x02), seg(0x10), Op::Accept]);
    assert_eq!(w.sockets(), 2, "the new connection was accepted");
    let w = fuzzkit::run(&[seg(0x02), Op::Accept]);
    assert_eq!(w.sockets(), 1, "no handshake without the ACK");
}

#[test]
fn the_seed_corpus_and_recorded_regressions_pass() {
    let mut frames_sent = 0;
    for target in ["frames", "wire"] {
        let seeds = inputs("seeds", target);
        assert!(seeds.len() > 100, "fuzz/seeds/{target}: {}", seeds.len());
        for (name, bytes) in seeds.iter().chain(&inputs("regressions", target)) {
            // Shown if the run fails.
            println!("{target}: {name}");
            match target {
                "frames" => {
                    let ops = ops_from(bytes);
                    frames_sent += fuzzkit::run(&ops).sent;
                }
                _ => fuzzkit::wire(bytes),
            }
        }
    }
    assert!(frames_sent > 1000, "{frames_sent}");
}
