//! A hierarchical timer wheel for one core.
//!
//! Owns: every pending deadline of one core (RTO, delayed ACK, persist,
//! keepalive, SYN-RECEIVED, TIME-WAIT, FIN-WAIT-2) and the value to hand back
//! when it expires. It answers three questions cheaply: "arm this", "disarm
//! this", and "what is due at `now`?", plus "when is the next one due?" so the
//! runtime knows how long it may sleep (or how far a test may jump virtual
//! time).
//!
//! Never: reads a clock (time is the `now` the caller passes), allocates per
//! timer in steady state, shares itself across cores, fires a timer before its
//! deadline, or fires a timer twice.
//!
//! # Shape
//!
//! Ticks count `tick` (default 1 ms) since the wheel's `start`. A deadline `d`
//! becomes tick `ceil((d - start) / tick)` and is due once
//! `floor((now - start) / tick)` reaches it, so a timer never fires before its
//! deadline and at most one tick after it. Deadlines at or before the last
//! `now` passed to [`TimerWheel::expire`] go to a due list that the next
//! `expire` drains first, whatever `now` it is given.
//!
//! Six levels of 64 slots (6 bits per level, 36 bits: 2^36 ticks, 795 days at
//! 1 ms) hold the rest, as in the Linux and tokio wheels: a timer sits at the
//! level of the highest 6-bit digit in which its tick differs from the wheel's
//! `elapsed` tick, in the slot named by that digit. All timers of a level
//! therefore lie in `elapsed`'s block of the next level up and in slots after
//! `elapsed`'s own digit, so the lowest non-empty level's lowest occupied
//! slot (one `trailing_zeros` on that level's occupancy bitmap) holds the
//! earliest timers. When time reaches a higher-level slot's first tick, the
//! slot is cascaded one or more levels down; a level-0 slot is exactly one
//! tick and fires whole. A tick in a later 2^36-tick block than `elapsed`
//! goes to an overflow list that is re-inserted when time reaches the block
//! holding its earliest timer.
//!
//! # Storage and cancellation
//!
//! Timers live in one slab `Vec` of entries with a free stack; each list
//! (every slot, plus the due and overflow lists) is a `Vec` of
//! `(index, generation)` references into the slab. Cancellation is lazy:
//! it frees the slab entry at once (bumping its generation, so the
//! [`TimerId`] and the reference left in the slot both go stale) and
//! leaves the reference where it is; firing and cascading skip references
//! whose entry's generation or list no longer match. Insert is a free-stack
//! pop and a `push`; cancel touches one entry and one counter: both O(1).
//! Nothing is allocated once the slab and the slot `Vec`s have grown to
//! their peaks: slot `Vec`s keep their capacity when drained.
//!
//! Tombstones cannot pile up: each list counts its live references, a list
//! whose last live timer is cancelled is cleared on the spot, and a list
//! with more than twice as many references as live timers (plus a small
//! constant) is compacted in place, stably, which costs O(1) amortised per
//! cancel. So a million insert-cancel cycles leave memory where it was.
//!
//! Why `Vec`s of references rather than intrusive linked lists threaded
//! through the slab (tokio's and Linux's choice): firing and cascading walk
//! a slot, and with a million timers the slab is tens of megabytes, so every
//! entry visited is a cache miss. A linked list makes those misses a
//! dependent chain (the next index is in the entry being fetched); an array
//! of indices lets the CPU fetch many entries at once. Measured here
//! (`bench/timer_wheel.rs`, 1M timers) the array walk fired timers several
//! times faster; cancel also touches one entry instead of three (the entry
//! and both neighbours). The cost is tombstones, bounded as above.
//!
//! A reference is live only if its entry's generation *and* current list
//! match, so even a generation counter that wrapped (2^32 reuses of one
//! entry while an old tombstone waits) cannot fire a timer from the wrong
//! slot or fire it twice.
//!
//! # Order
//!
//! Timers fire in tick order, and within one tick in insertion order
//! (a [`TimerWheel::reschedule`] counts as a fresh insertion). Cascades walk
//! a slot front to back and append, and compaction is stable, which
//! preserves that order.

#[cfg(test)]
mod tests;

use core::cell::Cell;

use crate::time::{Duration, Instant};

/// The tick used by [`TimerWheel::with_default_tick`]: TCP's timers need no
/// finer grain (RFC 6298's clock granularity G is typically milliseconds).
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
const LEVELS: usize = 6;
/// Ticks covered by the whole wheel: one top-level block.
const WHEEL_BITS: u32 = SLOT_BITS * LEVELS as u32;
const WHEEL_MASK: u64 = (1 << WHEEL_BITS) - 1;

/// List indices: `level * SLOTS + slot` for the wheel, then the two extras.
const DUE: u16 = (LEVELS * SLOTS) as u16;
const OVERFLOW: u16 = DUE + 1;
const LISTS: usize = LEVELS * SLOTS + 2;
/// The list of a free entry.
const NO_LIST: u16 = u16::MAX;

/// A list is compacted when it holds more than `2 * live + COMPACT_SLACK`
/// references.
const COMPACT_SLACK: usize = 16;

/// Names one armed timer. Copy it freely: once the timer has fired, been
/// cancelled or been rescheduled (which issues a new id), every operation on
/// the old id is a no-op that returns `None`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId {
    index: u32,
    gen: u32,
}

struct Entry<T> {
    /// `Some` exactly while the entry is a pending timer.
    value: Option<T>,
    /// Absolute tick at which the timer is due (for a due-list entry: the
    /// `elapsed` tick it was inserted at, i.e. already due).
    tick: u64,
    /// Bumped whenever the entry is freed or rescheduled, so old
    /// [`TimerId`]s and the references left in lists go stale.
    gen: u32,
    /// The list holding the entry's live reference; `NO_LIST` while free.
    list: u16,
}

/// A reference from a list into the slab: live iff the entry's generation
/// and list still match.
#[derive(Clone, Copy)]
struct Ref {
    index: u32,
    gen: u32,
}

struct List {
    /// Live references and tombstones, in insertion order.
    refs: Vec<Ref>,
    /// Number of live references in `refs`.
    live: usize,
    /// A lower bound on the ticks of the live entries, exact unless `stale`.
    /// Only read for slots above level 0 and for the overflow list (a
    /// level-0 slot is a single tick). `Cell` so that `next_deadline(&self)`
    /// can cache a recomputed minimum.
    min: Cell<u64>,
    /// Set when the entry holding the minimum was cancelled or moved.
    stale: Cell<bool>,
}

/// A hierarchical timer wheel holding values of type `T` (typically a small
/// key naming a connection and which of its timers this is).
pub struct TimerWheel<T> {
    entries: Vec<Entry<T>>,
    /// Free slab indices; the most recently freed (cache-warm) is reused
    /// first.
    free: Vec<u32>,
    lists: Vec<List>,
    /// Bit `s` of `occupied[l]` is set iff slot `s` of level `l` holds a
    /// live timer.
    occupied: [u64; LEVELS],
    start: Instant,
    /// The tick length in microseconds, at least 1.
    tick_micros: u64,
    /// Every timer whose tick is at most `elapsed` has fired (the due list
    /// aside, which the next `expire` drains). Wheel entries have ticks
    /// above `elapsed` and sit at the level `level_for(elapsed, tick)`.
    elapsed: u64,
    /// The latest `now` passed to `expire` (or `start`).
    last_now: Instant,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose tick 0 is `start`, with ticks of `tick`.
    ///
    /// # Panics
    /// If `tick` is zero.
    pub fn new(start: Instant, tick: Duration) -> Self {
        Self::with_capacity(start, tick, 0)
    }

    /// An empty wheel with 1 ms ticks.
    pub fn with_default_tick(start: Instant) -> Self {
        Self::new(start, DEFAULT_TICK)
    }

    /// An empty wheel whose slab already holds room for `capacity` timers.
    ///
    /// # Panics
    /// If `tick` is zero.
    pub fn with_capacity(start: Instant, tick: Duration, capacity: usize) -> Self {
        assert!(!tick.is_zero(), "timer wheel tick must be at least 1us");
        let lists = (0..LISTS)
            .map(|_| List {
                refs: Vec::new(),
                live: 0,
                min: Cell::new(u64::MAX),
                stale: Cell::new(false),
            })
            .collect();
        TimerWheel {
            entries: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            lists,
            occupied: [0; LEVELS],
            start,
            tick_micros: tick.total_micros(),
            elapsed: 0,
            last_now: start,
            len: 0,
        }
    }

    /// The tick length.
    pub fn tick(&self) -> Duration {
        Duration::from_micros(self.tick_micros)
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `id` names a pending timer.
    pub fn contains(&self, id: TimerId) -> bool {
        self.live(id).is_some()
    }

    /// Arms a timer that fires `value` at the first [`expire`](Self::expire)
    /// whose `now` has reached `deadline` rounded up to a tick. A deadline
    /// at or before the last `now` given to `expire` fires at the next
    /// `expire`, whatever its `now`.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let index = match self.free.pop() {
            Some(index) => {
                self.entries[index as usize].value = Some(value);
                index
            }
            None => {
                let index = u32::try_from(self.entries.len())
                    .expect("timer wheel slab exceeds u32 indices");
                self.entries.push(Entry {
                    value: Some(value),
                    tick: 0,
                    gen: 0,
                    list: NO_LIST,
                });
                index
            }
        };
        self.len += 1;
        self.place(index, deadline)
    }

    /// Disarms a pending timer and returns its value; `None` if `id` is
    /// stale (the timer already fired, was cancelled or rescheduled).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let index = self.live(id)?;
        self.detach(index);
        let e = &mut self.entries[index as usize];
        let value = e.value.take();
        e.list = NO_LIST;
        self.free.push(index);
        self.len -= 1;
        value
    }

    /// Moves a pending timer to a new deadline, as if cancelled and inserted
    /// again (it goes after timers already in its new tick), keeping its
    /// value. Returns the timer's new id (the old one goes stale), or `None`
    /// if `id` is stale.
    pub fn reschedule(&mut self, id: TimerId, deadline: Instant) -> Option<TimerId> {
        let index = self.live(id)?;
        self.detach(index);
        Some(self.place(index, deadline))
    }

    /// The earliest `now` at which [`expire`](Self::expire) would fire
    /// something: the earliest pending timer's deadline rounded up to its
    /// tick (never earlier, so `expire(next_deadline)` always fires at least
    /// one timer), or the last `now` if a past-deadline timer is waiting.
    /// `None` when no timer is pending.
    ///
    /// Costs a few bit operations, plus a scan of one slot when the timer
    /// that held that slot's minimum was cancelled since the last call.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        if self.lists[DUE as usize].live != 0 {
            return Some(self.last_now);
        }
        let tick = match self.lowest_level() {
            Some(0) => (self.elapsed & !SLOT_MASK) | u64::from(self.occupied[0].trailing_zeros()),
            Some(level) => {
                let slot = self.occupied[level].trailing_zeros() as usize;
                self.list_min((level * SLOTS + slot) as u16)
            }
            None => self.list_min(OVERFLOW),
        };
        Some(self.start + Duration::from_micros(tick.saturating_mul(self.tick_micros)))
    }

    /// Fires every timer due at `now`: appends their values to `out` in
    /// firing order (tick order, insertion order within a tick) and returns
    /// how many. A `now` earlier than a previous one is treated as that one.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<T>) -> usize {
        let now = now.max(self.last_now);
        let target = (now - self.start).total_micros() / self.tick_micros;
        let before = out.len();
        if self.len != 0 {
            self.fire(DUE, out);
            self.advance(target, out);
        }
        self.elapsed = self.elapsed.max(target);
        self.last_now = now;
        out.len() - before
    }

    /// Processes, in tick order, every slot whose first tick is at most
    /// `target`: level-0 slots fire, higher slots cascade down, the overflow
    /// list is re-inserted.
    fn advance(&mut self, target: u64, out: &mut Vec<T>) {
        loop {
            match self.lowest_level() {
                Some(level) => {
                    let slot = u64::from(self.occupied[level].trailing_zeros());
                    let shift = SLOT_BITS * level as u32;
                    // Level-`level` entries share every digit above theirs
                    // with `elapsed` (see the field's invariant).
                    let level_span = (SLOTS as u64) << shift;
                    let first_tick = (self.elapsed & !(level_span - 1)) | (slot << shift);
                    if first_tick > target {
                        return;
                    }
                    debug_assert!(first_tick >= self.elapsed);
                    self.elapsed = first_tick;
                    let list = (level * SLOTS) as u16 + slot as u16;
                    if level == 0 {
                        self.fire(list, out);
                    } else {
                        self.cascade(list);
                    }
                }
                None => {
                    if self.lists[OVERFLOW as usize].live == 0 {
                        return;
                    }
                    // The wheel is empty, so time may jump straight to the
                    // block holding the earliest overflow timer.
                    let block = self.list_min(OVERFLOW) & !WHEEL_MASK;
                    if block > target {
                        return;
                    }
                    debug_assert!(block > self.elapsed);
                    self.elapsed = block;
                    self.cascade(OVERFLOW);
                }
            }
        }
    }

    /// Gives the (allocated, detached) entry `index` its tick for `deadline`
    /// and a fresh generation, and appends it to its list.
    fn place(&mut self, index: u32, deadline: Instant) -> TimerId {
        let (tick, list) = if deadline <= self.last_now {
            (self.elapsed, DUE)
        } else {
            // `deadline > last_now >= start`, and `elapsed` is `last_now`'s
            // tick rounded down, so this tick is above `elapsed`.
            let tick = (deadline - self.start)
                .total_micros()
                .div_ceil(self.tick_micros);
            (tick, self.list_for(tick))
        };
        let e = &mut self.entries[index as usize];
        e.gen = e.gen.wrapping_add(1);
        e.tick = tick;
        let gen = e.gen;
        self.push(list, index);
        TimerId { index, gen }
    }

    /// The list of a wheel timer at `tick >= elapsed`.
    fn list_for(&self, tick: u64) -> u16 {
        let masked = (self.elapsed ^ tick) | SLOT_MASK;
        let level = (63 - masked.leading_zeros()) / SLOT_BITS;
        if level as usize >= LEVELS {
            return OVERFLOW;
        }
        let slot = (tick >> (SLOT_BITS * level)) & SLOT_MASK;
        (level as usize * SLOTS) as u16 + slot as u16
    }

    fn lowest_level(&self) -> Option<usize> {
        self.occupied.iter().position(|&bits| bits != 0)
    }

    /// Whether `r`, found in `list`, still refers to a live timer there.
    fn is_live(&self, r: Ref, list: u16) -> bool {
        let e = &self.entries[r.index as usize];
        e.gen == r.gen && e.list == list
    }

    /// The exact minimum tick of a list with live timers, rescanning it if
    /// the cached bound went stale.
    fn list_min(&self, list: u16) -> u64 {
        let l = &self.lists[list as usize];
        if l.stale.get() {
            let min = l
                .refs
                .iter()
                .filter(|&&r| self.is_live(r, list))
                .map(|r| self.entries[r.index as usize].tick)
                .min()
                .unwrap_or(u64::MAX);
            l.min.set(min);
            l.stale.set(false);
        }
        l.min.get()
    }

    /// The slab index of `id` if it names a pending timer.
    fn live(&self, id: TimerId) -> Option<u32> {
        let e = self.entries.get(id.index as usize)?;
        (e.gen == id.gen && e.list != NO_LIST).then_some(id.index)
    }

    /// Appends a live reference to the entry `index` (whose `gen` and
    /// `tick` are set) to `list`.
    fn push(&mut self, list: u16, index: u32) {
        let e = &mut self.entries[index as usize];
        e.list = list;
        let (tick, gen) = (e.tick, e.gen);
        let l = &mut self.lists[list as usize];
        if l.live == 0 {
            l.min.set(tick);
            l.stale.set(false);
            if list < DUE {
                self.occupied[list as usize / SLOTS] |= 1 << (list as usize % SLOTS);
            }
        } else if tick < l.min.get() {
            l.min.set(tick);
        }
        l.live += 1;
        l.refs.push(Ref { index, gen });
    }

    /// Turns the live reference to the entry `index` into a tombstone (by
    /// bumping the entry's generation), keeping its list's bookkeeping and
    /// bounding its tombstones. The entry keeps `list`; the caller frees or
    /// re-places it.
    fn detach(&mut self, index: u32) {
        let e = &mut self.entries[index as usize];
        // Whatever happens next (free or re-place), this reference is dead.
        e.gen = e.gen.wrapping_add(1);
        let (list, tick) = (e.list, e.tick);
        let l = &mut self.lists[list as usize];
        l.live -= 1;
        if l.live == 0 {
            l.refs.clear();
            if list < DUE {
                self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
            }
            return;
        }
        if tick == l.min.get() {
            l.stale.set(true);
        }
        if l.refs.len() > 2 * l.live + COMPACT_SLACK {
            self.compact(list);
        }
    }

    /// Drops every tombstone of `list`, keeping the live references in
    /// order.
    fn compact(&mut self, list: u16) {
        let mut refs = core::mem::take(&mut self.lists[list as usize].refs);
        refs.retain(|&r| self.is_live(r, list));
        debug_assert_eq!(refs.len(), self.lists[list as usize].live);
        self.lists[list as usize].refs = refs;
    }

    /// Fires every live timer of `list`, front to back.
    fn fire(&mut self, list: u16, out: &mut Vec<T>) {
        let l = &mut self.lists[list as usize];
        if l.live == 0 {
            return;
        }
        let mut refs = core::mem::take(&mut l.refs);
        l.live = 0;
        if list < DUE {
            self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
        }
        for &r in &refs {
            let e = &mut self.entries[r.index as usize];
            if e.gen != r.gen || e.list != list {
                continue;
            }
            if let Some(value) = e.value.take() {
                out.push(value);
            }
            e.list = NO_LIST;
            self.free.push(r.index);
            self.len -= 1;
        }
        refs.clear();
        self.lists[list as usize].refs = refs;
    }

    /// Re-inserts every live timer of `list`, front to back, at its level
    /// for the current `elapsed`.
    fn cascade(&mut self, list: u16) {
        let l = &mut self.lists[list as usize];
        let mut refs = core::mem::take(&mut l.refs);
        l.live = 0;
        if list < DUE {
            self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
        }
        for &r in &refs {
            let e = &self.entries[r.index as usize];
            if e.gen != r.gen || e.list != list {
                continue;
            }
            let to = self.list_for(e.tick);
            self.push(to, r.index);
        }
        refs.clear();
        // Overflow may have re-filed some timers into itself; keep those
        // (the old buffer is then dropped: overflow is rare).
        let l = &mut self.lists[list as usize];
        if l.refs.is_empty() {
            l.refs = refs;
        }
    }
}

impl<T> core::fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.len)
            .field("tick", &self.tick())
            .field("elapsed_ticks", &self.elapsed)
            .field("last_now", &self.last_now)
            .finish()
    }
}
