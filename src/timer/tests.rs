use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use proptest::prelude::*;

use super::*;
use crate::rand::Rng;

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

fn us(n: u64) -> Instant {
    Instant::from_micros(n)
}

fn wheel() -> TimerWheel<u32> {
    TimerWheel::with_default_tick(Instant::ZERO)
}

fn expire_all(w: &mut TimerWheel<u32>, now: Instant) -> Vec<u32> {
    let mut out = Vec::new();
    let n = w.expire(now, &mut out);
    assert_eq!(n, out.len());
    out
}

#[test]
fn new_wheel_is_empty_and_has_no_deadline() {
    let w = wheel();
    assert!(w.is_empty());
    assert_eq!(w.len(), 0);
    assert_eq!(w.next_deadline(), None);
    assert_eq!(w.tick(), DEFAULT_TICK);
}

#[test]
fn timer_fires_at_its_deadline_and_not_one_tick_before() {
    let mut w = wheel();
    w.insert(ms(5), 1);
    assert_eq!(w.len(), 1);
    assert!(expire_all(&mut w, us(4_999)).is_empty());
    assert_eq!(expire_all(&mut w, ms(5)), vec![1]);
    assert!(w.is_empty());
    assert!(expire_all(&mut w, ms(100)).is_empty());
}

#[test]
fn deadline_between_ticks_rounds_up_never_early() {
    let mut w = wheel();
    w.insert(us(5_001), 7);
    assert_eq!(w.next_deadline(), Some(ms(6)));
    assert!(expire_all(&mut w, us(5_999)).is_empty());
    assert_eq!(expire_all(&mut w, ms(6)), vec![7]);
}

#[test]
fn past_deadline_fires_at_next_expire_without_time_advancing() {
    let mut w = wheel();
    assert!(expire_all(&mut w, us(10_500)).is_empty());
    w.insert(ms(3), 1);
    w.insert(us(10_500), 2);
    // Due now, so the next expire fires them whatever its `now`.
    assert_eq!(w.next_deadline(), Some(us(10_500)));
    assert_eq!(expire_all(&mut w, us(10_500)), vec![1, 2]);
    // A deadline later in the current tick is not past: it waits for 11 ms.
    w.insert(us(10_700), 3);
    assert!(expire_all(&mut w, us(10_800)).is_empty());
    assert_eq!(expire_all(&mut w, ms(11)), vec![3]);
}

#[test]
fn deadline_equal_to_start_fires_at_first_expire() {
    let mut w = TimerWheel::new(ms(100), DEFAULT_TICK);
    w.insert(ms(100), 1);
    w.insert(ms(50), 2);
    assert_eq!(expire_all(&mut w, ms(100)), vec![1, 2]);
}

#[test]
fn earlier_now_than_before_is_treated_as_the_later_one() {
    let mut w = wheel();
    expire_all(&mut w, ms(50));
    w.insert(ms(51), 1);
    assert!(expire_all(&mut w, ms(10)).is_empty());
    assert_eq!(expire_all(&mut w, ms(51)), vec![1]);
}

#[test]
fn same_tick_fires_in_insertion_order_even_after_cascading() {
    let mut w = wheel();
    // Deadlines in one 1 ms tick, inserted out of deadline order, far enough
    // out to start at level 2 and cascade twice.
    w.insert(us(5_000_900), 1);
    w.insert(us(5_000_100), 2);
    w.insert(ms(5_000), 99);
    expire_all(&mut w, ms(4_990));
    // Inserted after the cascades into the same tick: goes last.
    w.insert(us(5_000_500), 3);
    assert!(expire_all(&mut w, ms(4_999)).is_empty());
    assert_eq!(expire_all(&mut w, ms(5_000)), vec![99]);
    assert!(expire_all(&mut w, us(5_000_999)).is_empty());
    assert_eq!(expire_all(&mut w, ms(5_001)), vec![1, 2, 3]);
}

#[test]
fn one_expire_fires_many_ticks_in_tick_order() {
    let mut w = wheel();
    let deadlines = [3_600_000u64, 1, 63, 64, 65, 4_095, 4_096, 262_144, 70_000];
    for (i, &d) in deadlines.iter().enumerate() {
        w.insert(ms(d), i as u32);
    }
    let mut want: Vec<(u64, u32)> = deadlines
        .iter()
        .enumerate()
        .map(|(i, &d)| (d, i as u32))
        .collect();
    want.sort();
    let got = expire_all(&mut w, ms(4_000_000));
    assert_eq!(got, want.iter().map(|&(_, v)| v).collect::<Vec<_>>());
}

#[test]
fn cancel_returns_value_and_timer_never_fires() {
    let mut w = wheel();
    let a = w.insert(ms(10), 1);
    let b = w.insert(ms(10), 2);
    assert!(w.contains(a));
    assert_eq!(w.cancel(a), Some(1));
    assert!(!w.contains(a));
    assert_eq!(w.len(), 1);
    assert_eq!(expire_all(&mut w, ms(10)), vec![2]);
    assert_eq!(w.cancel(b), None, "fired timer's id is stale");
}

#[test]
fn cancel_of_stale_id_returns_none_even_after_entry_reuse() {
    let mut w = wheel();
    let a = w.insert(ms(10), 1);
    assert_eq!(w.cancel(a), Some(1));
    assert_eq!(w.cancel(a), None);
    // The freed entry is reused; the old id must not reach the new timer.
    let b = w.insert(ms(20), 2);
    assert_eq!(a.index, b.index);
    assert_ne!(a, b);
    assert_eq!(w.cancel(a), None);
    assert_eq!(w.reschedule(a, ms(1)), None);
    assert_eq!(w.len(), 1);
    assert_eq!(expire_all(&mut w, ms(20)), vec![2]);
}

#[test]
fn cancel_of_past_deadline_timer_prevents_it_firing() {
    let mut w = wheel();
    expire_all(&mut w, ms(10));
    let a = w.insert(ms(1), 1);
    w.insert(ms(2), 2);
    assert_eq!(w.cancel(a), Some(1));
    assert_eq!(expire_all(&mut w, ms(10)), vec![2]);
}

#[test]
fn reschedule_moves_timer_later_and_earlier() {
    let mut w = wheel();
    let a = w.insert(ms(10), 1);
    w.insert(ms(20), 2);
    assert_eq!(w.reschedule(a, ms(30)), Some(a));
    assert_eq!(expire_all(&mut w, ms(25)), vec![2]);
    assert_eq!(w.reschedule(a, ms(26)), Some(a));
    assert_eq!(w.next_deadline(), Some(ms(26)));
    assert_eq!(expire_all(&mut w, ms(40)), vec![1]);
    assert_eq!(w.reschedule(a, ms(50)), None);
}

#[test]
fn reschedule_counts_as_fresh_insertion_for_same_tick_order() {
    let mut w = wheel();
    let a = w.insert(ms(10), 1);
    w.insert(ms(10), 2);
    w.reschedule(a, ms(10));
    assert_eq!(expire_all(&mut w, ms(10)), vec![2, 1]);
}

#[test]
fn next_deadline_is_exact_at_every_level() {
    let mut w = wheel();
    // Far timers first, so each level's minimum is what next_deadline reads.
    let far = w.insert(us(3_600_000_500), 4);
    assert_eq!(w.next_deadline(), Some(ms(3_600_001)));
    let mid = w.insert(us(10_000_001), 3);
    assert_eq!(w.next_deadline(), Some(ms(10_001)));
    w.insert(ms(70_000), 5);
    let near = w.insert(ms(100), 2);
    assert_eq!(w.next_deadline(), Some(ms(100)));
    let nearest = w.insert(ms(40), 1);
    assert_eq!(w.next_deadline(), Some(ms(40)));
    // Cancelling the minimum of a higher-level slot makes the next call
    // rescan it.
    w.cancel(nearest);
    w.cancel(near);
    assert_eq!(w.next_deadline(), Some(ms(10_001)));
    w.cancel(mid);
    assert_eq!(w.next_deadline(), Some(ms(70_000)));
    // expire(next_deadline) always fires something.
    assert_eq!(expire_all(&mut w, ms(70_000)), vec![5]);
    assert_eq!(w.next_deadline(), Some(ms(3_600_001)));
    w.cancel(far);
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn jumping_virtual_time_by_next_deadline_fires_each_timer_once() {
    let mut w = TimerWheel::new(Instant::ZERO, Duration::from_micros(1));
    let mut rng = Rng::new(7);
    let mut want = Vec::new();
    for i in 0..2_000u32 {
        let d = rng.gen_range(0, 1 << 40);
        w.insert(us(d), i);
        want.push((d, i));
    }
    want.sort();
    let mut got = Vec::new();
    let mut jumps = 0;
    while let Some(t) = w.next_deadline() {
        let n = w.expire(t, &mut got);
        assert!(n >= 1, "expire(next_deadline) fired nothing at {t:?}");
        jumps += 1;
    }
    assert!(jumps <= 2_000);
    assert_eq!(got, want.iter().map(|&(_, v)| v).collect::<Vec<_>>());
}

#[test]
fn timers_beyond_the_wheel_use_overflow_and_fire_exactly() {
    // With 1 us ticks the wheel spans 2^36 us (about 19 h).
    let mut w = TimerWheel::new(Instant::ZERO, Duration::from_micros(1));
    let span = 1u64 << WHEEL_BITS;
    let a = span + 5;
    let b = 3 * span + 17;
    let c = span - 1;
    w.insert(us(b), 2);
    w.insert(us(a), 1);
    w.insert(us(c), 0);
    assert!(w.lists[OVERFLOW as usize].head != NIL);
    assert_eq!(w.next_deadline(), Some(us(c)));
    assert_eq!(expire_all(&mut w, us(c)), vec![0]);
    assert_eq!(w.next_deadline(), Some(us(a)));
    assert!(expire_all(&mut w, us(a - 1)).is_empty());
    assert_eq!(expire_all(&mut w, us(a)), vec![1]);
    assert_eq!(w.next_deadline(), Some(us(b)));
    assert!(expire_all(&mut w, us(b - 1)).is_empty());
    assert_eq!(expire_all(&mut w, us(b)), vec![2]);
    assert!(w.is_empty());
}

#[test]
fn far_future_deadline_never_fires() {
    let mut w = TimerWheel::new(ms(1), Duration::from_micros(3));
    let id = w.insert(Instant::FAR_FUTURE, 1);
    assert!(expire_all(&mut w, Instant::from_secs(1 << 40)).is_empty());
    assert_eq!(w.len(), 1);
    assert_eq!(w.cancel(id), Some(1));
}

#[test]
fn million_insert_cancel_cycles_keep_the_slab_bounded() {
    let mut w = TimerWheel::new(Instant::ZERO, DEFAULT_TICK);
    let mut rng = Rng::new(1);
    let mut out = Vec::new();
    let mut now = 0u64;
    let mut held = Vec::with_capacity(16);
    for i in 0..1_000_000u32 {
        // Deadlines from 1 ms to 2 h, the spread of TCP's timers.
        let d = now + rng.gen_range(1_000, 7_200_000_000);
        let id = w.insert(us(d), i);
        if i % 64 == 0 {
            held.push(id);
        } else {
            assert_eq!(w.cancel(id), Some(i));
        }
        if held.len() == 16 {
            for id in held.drain(..) {
                w.cancel(id);
            }
        }
        if i % 1_000 == 0 {
            now += 700;
            w.expire(us(now), &mut out);
        }
    }
    assert!(w.len() <= 16);
    assert!(w.entries.len() <= 17, "slab grew to {}", w.entries.len());
    assert!(w.entries.capacity() <= 32);
}

#[test]
fn churn_beside_a_long_lived_timer_keeps_the_slab_bounded() {
    // A keepalive-like timer holds a far slot while a million others come
    // and go (some rescheduled first) in the same slot.
    let mut w = wheel();
    let keep = w.insert(Instant::from_secs(7_200), u32::MAX);
    let mut ids = Vec::new();
    for i in 0..1_000_000u32 {
        let d = Instant::from_secs(7_200) + Duration::from_millis(u64::from(i % 1000));
        ids.push(w.insert(d, i));
        if ids.len() == 100 {
            for (k, id) in ids.drain(..).enumerate() {
                if k % 7 == 0 {
                    let id = w.reschedule(id, Instant::from_secs(7_201)).unwrap();
                    assert_eq!(w.cancel(id), Some(i - 99 + k as u32));
                } else {
                    w.cancel(id).unwrap();
                }
            }
        }
    }
    assert_eq!(w.len(), 1);
    assert!(w.entries.len() <= 101);
    assert_eq!(w.next_deadline(), Some(Instant::from_secs(7_200)));
    assert_eq!(w.cancel(keep), Some(u32::MAX));
    assert!(w.is_empty());
}

#[test]
fn expire_reuses_entries_so_steady_churn_does_not_grow_the_slab() {
    let mut w = TimerWheel::with_capacity(Instant::ZERO, DEFAULT_TICK, 1_000);
    let mut out = Vec::with_capacity(1_000);
    let mut rng = Rng::new(2);
    for i in 0..1_000 {
        w.insert(ms(rng.gen_range(1, 1_000)), i);
    }
    for step in 1..=100_000u64 {
        out.clear();
        w.expire(ms(step), &mut out);
        for &v in &out {
            w.insert(ms(step + rng.gen_range(1, 1_000)), v);
        }
    }
    assert_eq!(w.len(), 1_000);
    assert_eq!(w.entries.len(), 1_000);
    assert_eq!(w.entries.capacity(), 1_000);
}

/// The reference model: a binary heap of (effective tick, insertion order),
/// with cancelled entries left as tombstones.
struct Model {
    start: u64,
    tick: u64,
    last_now: u64,
    elapsed: u64,
    order: u64,
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    live: HashMap<u32, Live>,
}

struct Live {
    id: TimerId,
    order: u64,
    deadline: u64,
}

impl Model {
    fn new(start: u64, tick: u64) -> Self {
        Model {
            start,
            tick,
            last_now: start,
            elapsed: 0,
            order: 0,
            heap: BinaryHeap::new(),
            live: HashMap::new(),
        }
    }

    /// The spec: past deadlines are due at the current tick; others at their
    /// deadline rounded up to a tick.
    fn push(&mut self, value: u32, id: TimerId, deadline: u64) {
        let tick = if deadline <= self.last_now {
            self.elapsed
        } else {
            (deadline - self.start).div_ceil(self.tick)
        };
        self.order += 1;
        self.heap.push(Reverse((tick, self.order, value)));
        self.live.insert(
            value,
            Live {
                id,
                order: self.order,
                deadline,
            },
        );
    }

    fn is_current(&self, order: u64, value: u32) -> bool {
        self.live.get(&value).is_some_and(|l| l.order == order)
    }

    /// The values due at `now`, in firing order, with their deadlines.
    fn expire(&mut self, now: u64) -> Vec<(u32, u64)> {
        let now = now.max(self.last_now);
        let target = (now - self.start) / self.tick;
        let mut fired = Vec::new();
        while let Some(&Reverse((tick, order, value))) = self.heap.peek() {
            if !self.is_current(order, value) {
                self.heap.pop();
                continue;
            }
            if tick > target {
                break;
            }
            self.heap.pop();
            let live = self.live.remove(&value).expect("current entry is live");
            fired.push((value, live.deadline));
        }
        self.elapsed = target;
        self.last_now = now;
        fired
    }

    fn next_deadline(&mut self) -> Option<u64> {
        while let Some(&Reverse((tick, order, value))) = self.heap.peek() {
            if self.is_current(order, value) {
                return Some(if tick <= self.elapsed {
                    self.last_now
                } else {
                    self.start.saturating_add(tick.saturating_mul(self.tick))
                });
            }
            self.heap.pop();
        }
        None
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Deadline relative to the last `now` (negative: in the past).
    Insert(i64),
    /// Index into every id ever issued, live or stale.
    Cancel(usize),
    Reschedule(usize, i64),
    Advance(u64),
}

const HOUR: u64 = 3_600_000_000;

fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        -5_000i64..=0,
        0i64..3_000,
        0i64..300_000,
        0i64..60_000_000,
        0i64..(40 * HOUR as i64),
    ]
}

fn advance() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0u64..3_000,
        0u64..300_000,
        0u64..60_000_000,
        0u64..(30 * HOUR),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => offset().prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => (any::<usize>(), offset()).prop_map(|(i, d)| Op::Reschedule(i, d)),
        3 => advance().prop_map(Op::Advance),
    ]
}

fn tick_micros() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(1_000), Just(10_000), 1u64..5_000]
}

/// Runs `ops` against the wheel and the model and checks they agree on every
/// answer, plus the properties stated directly: nothing fires early, nothing
/// stays pending a full tick past its deadline, nothing fires twice.
fn run_against_model(start: u64, tick: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut w = TimerWheel::new(us(start), Duration::from_micros(tick));
    let mut m = Model::new(start, tick);
    let mut issued: Vec<(TimerId, u32)> = Vec::new();
    let mut fired_ever = std::collections::HashSet::new();
    let mut out = Vec::new();
    let at = |m: &Model, off: i64| m.last_now.saturating_add_signed(off);
    for op in ops {
        match *op {
            Op::Insert(off) => {
                let value = issued.len() as u32;
                let deadline = at(&m, off);
                let id = w.insert(us(deadline), value);
                m.push(value, id, deadline);
                issued.push((id, value));
            }
            Op::Cancel(i) if !issued.is_empty() => {
                let (id, value) = issued[i % issued.len()];
                let want = m.live.get(&value).map(|l| l.id) == Some(id);
                prop_assert_eq!(w.cancel(id), want.then_some(value));
                if want {
                    m.live.remove(&value);
                }
            }
            Op::Reschedule(i, off) if !issued.is_empty() => {
                let (id, value) = issued[i % issued.len()];
                let deadline = at(&m, off);
                let want = m.live.contains_key(&value);
                prop_assert_eq!(w.reschedule(id, us(deadline)), want.then_some(id));
                if want {
                    m.push(value, id, deadline);
                }
            }
            Op::Advance(dt) => {
                let now = m.last_now + dt;
                out.clear();
                let n = w.expire(us(now), &mut out);
                prop_assert_eq!(n, out.len());
                let want = m.expire(now);
                let want_values: Vec<u32> = want.iter().map(|&(v, _)| v).collect();
                prop_assert_eq!(&out, &want_values, "fired at {}", now);
                for &(v, deadline) in &want {
                    prop_assert!(deadline <= now, "{} fired early", v);
                    prop_assert!(fired_ever.insert(v), "{} fired twice", v);
                }
                // Everything due has fired: what is left is due after `now`.
                prop_assert!(w.next_deadline().is_none_or(|d| d > us(now)));
            }
            Op::Cancel(_) | Op::Reschedule(..) => {}
        }
        prop_assert_eq!(w.len(), m.live.len());
        prop_assert_eq!(w.next_deadline(), m.next_deadline().map(us));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wheel_matches_heap_model_under_random_interleavings(
        start in prop_oneof![Just(0u64), 0u64..(1 << 40)],
        tick in tick_micros(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        run_against_model(start, tick, &ops)?;
    }
}

#[test]
fn wheel_matches_heap_model_over_a_long_seeded_run() {
    for (seed, tick) in [(1u64, 1_000u64), (2, 1), (3, 37)] {
        let mut rng = Rng::new(seed);
        let ops: Vec<Op> = (0..20_000)
            .map(|_| {
                let scale =
                    [3_000u64, 300_000, 60_000_000, 40 * HOUR][rng.gen_range(0, 4) as usize];
                match rng.gen_range(0, 10) {
                    0..=3 => Op::Insert(rng.gen_range(0, scale) as i64 - 1_000),
                    4..=5 => Op::Cancel(rng.gen_range(0, u64::MAX) as usize),
                    6 => Op::Reschedule(rng.gen_range(0, u64::MAX) as usize, scale as i64 / 2),
                    _ => Op::Advance(rng.gen_range(0, scale / 8)),
                }
            })
            .collect();
        run_against_model(rng.gen_range(0, 1 << 40), tick, &ops)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}
