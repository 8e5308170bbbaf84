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
//! Timers live in one slab `Vec` of entries with a free list; every slot (and
//! the due and overflow lists) is an intrusive doubly linked list threaded by
//! `u32` indices through the slab. Insert is a slab pop plus a tail link;
//! cancel is an unlink plus a slab push: O(1), no allocation once the slab has
//! grown to the peak number of pending timers. A [`TimerId`] carries the
//! entry's generation, bumped whenever the entry is freed, so a stale id (its
//! timer fired, was cancelled, and the entry reused) is recognised and
//! refused.
//!
//! Why unlink eagerly rather than leave a tombstone to be skipped, checked
//! by generation, at expiry (the heap-timer habit, and what DESIGN.md's
//! principle 4 first sketched): most TCP timers are cancelled long before
//! their deadline (an RTO re-armed on every ACK, a two-hour keepalive), so
//! tombstones outnumber live timers unless something sweeps them. Both
//! designs were built and measured (`bench/timer_wheel.rs`, pinned, the heap
//! in the same run): the lazy one, a `Vec` of `(index, generation)` per slot
//! whose cancel frees the entry and leaves a stale reference, fires and
//! cascades faster at a million timers (94 vs 236 ns per fired timer: an
//! index array lets the CPU fetch many cold entries at once, where a list
//! walk is a chain of dependent misses), but it lost the reschedule-heavy
//! TCP-like mix (25 vs 13 ns per operation at 10k timers, 157 vs 122 ns at
//! 1M) and random cancels, and bounding its tombstones needs compaction,
//! which makes cancel O(1) only amortised, with an O(slot) pause inside a
//! cancel. Unlinking is O(1) every time, frees the entry at once, keeps each
//! slot's list exactly the pending timers, and keeps
//! [`TimerWheel::next_deadline`] exact. (A plain `Vec` per slot without
//! tombstones is no alternative: removing from its middle is O(n), or with
//! `swap_remove` loses the insertion order same-tick timers must fire in.)
//!
//! # Order
//!
//! Timers fire in tick order, and within one tick in insertion order
//! (a [`TimerWheel::reschedule`] counts as a fresh insertion). Cascades walk
//! a slot front to back and append, which preserves that order.

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

/// "No entry" in a link, and "on no list" for a free entry.
const NIL: u32 = u32::MAX;
const NO_LIST: u16 = u16::MAX;

/// Names one armed timer. Copy it freely: once the timer has fired or been
/// cancelled, every operation on the id is a no-op that returns `None`.
///
/// The generation is 32 bits, and a freed entry is the next one reused, so
/// an id kept across 2^32 reuses of its entry could alias a later timer:
/// forget an id when its timer fires or is cancelled.
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
    /// Bumped each time the entry is freed, so old [`TimerId`]s go stale.
    gen: u32,
    prev: u32,
    /// For a free entry, the next free entry.
    next: u32,
    /// The list holding the entry; `NO_LIST` while free.
    list: u16,
}

struct List {
    head: u32,
    tail: u32,
    /// A lower bound on the ticks of the list's entries, exact unless
    /// `stale`. Only read for slots above level 0 and for the overflow list
    /// (a level-0 slot is a single tick). `Cell` so that `next_deadline(&self)`
    /// can cache a recomputed minimum.
    min: Cell<u64>,
    /// Set when the entry holding the minimum was cancelled.
    stale: Cell<bool>,
}

/// A hierarchical timer wheel holding values of type `T` (typically a small
/// key naming a connection and which of its timers this is).
pub struct TimerWheel<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    lists: Vec<List>,
    /// Bit `s` of `occupied[l]` is set iff slot `s` of level `l` is non-empty.
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

    /// An empty wheel whose slab already holds room for `capacity` timers,
    /// so the first `capacity` concurrent timers allocate nothing.
    ///
    /// # Panics
    /// If `tick` is zero.
    pub fn with_capacity(start: Instant, tick: Duration, capacity: usize) -> Self {
        assert!(!tick.is_zero(), "timer wheel tick must be at least 1us");
        let lists = (0..LISTS)
            .map(|_| List {
                head: NIL,
                tail: NIL,
                min: Cell::new(u64::MAX),
                stale: Cell::new(false),
            })
            .collect();
        TimerWheel {
            entries: Vec::with_capacity(capacity),
            free_head: NIL,
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
        let index = self.alloc(value);
        let (tick, list) = self.place(deadline);
        self.entries[index as usize].tick = tick;
        self.link_back(list, index);
        self.len += 1;
        TimerId {
            index,
            gen: self.entries[index as usize].gen,
        }
    }

    /// Disarms a pending timer and returns its value; `None` if `id` is
    /// stale (the timer already fired or was cancelled).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let index = self.live(id)?;
        self.unlink(index);
        let value = self.entries[index as usize].value.take();
        self.release(index);
        self.len -= 1;
        value
    }

    /// Moves a pending timer to a new deadline, as if cancelled and inserted
    /// again (it goes after timers already in its new tick) but keeping its
    /// id and value. `None` if `id` is stale.
    pub fn reschedule(&mut self, id: TimerId, deadline: Instant) -> Option<TimerId> {
        let index = self.live(id)?;
        self.unlink(index);
        let (tick, list) = self.place(deadline);
        self.entries[index as usize].tick = tick;
        self.link_back(list, index);
        Some(id)
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
        if self.lists[DUE as usize].head != NIL {
            return Some(self.last_now);
        }
        let tick = match self.lowest_level() {
            Some(0) => (self.elapsed & !SLOT_MASK) | u64::from(self.occupied[0].trailing_zeros()),
            Some(level) => {
                let slot = self.occupied[level].trailing_zeros() as usize;
                self.list_min(level * SLOTS + slot)
            }
            None => self.list_min(OVERFLOW as usize),
        };
        Some(self.instant_of(tick))
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
                    let block = self.elapsed & !(level_span - 1);
                    let first_tick = block | (slot << shift);
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
                    if self.lists[OVERFLOW as usize].head == NIL {
                        return;
                    }
                    // The wheel is empty, so time may jump straight to the
                    // block holding the earliest overflow timer.
                    let block = self.list_min(OVERFLOW as usize) & !WHEEL_MASK;
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

    /// The tick and list for a timer with `deadline`, given the current time.
    fn place(&self, deadline: Instant) -> (u64, u16) {
        if deadline <= self.last_now {
            return (self.elapsed, DUE);
        }
        // `deadline > last_now >= start`, and `elapsed` is `last_now`'s tick
        // rounded down, so this tick is above `elapsed`.
        let tick = (deadline - self.start)
            .total_micros()
            .div_ceil(self.tick_micros);
        (tick, self.list_for(tick))
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

    fn instant_of(&self, tick: u64) -> Instant {
        self.start + Duration::from_micros(tick.saturating_mul(self.tick_micros))
    }

    fn lowest_level(&self) -> Option<usize> {
        self.occupied.iter().position(|&bits| bits != 0)
    }

    /// The exact minimum tick of a non-empty list, rescanning it if the
    /// cached bound went stale.
    fn list_min(&self, list: usize) -> u64 {
        let l = &self.lists[list];
        if l.stale.get() {
            let mut min = u64::MAX;
            let mut i = l.head;
            while i != NIL {
                let e = &self.entries[i as usize];
                min = min.min(e.tick);
                i = e.next;
            }
            l.min.set(min);
            l.stale.set(false);
        }
        l.min.get()
    }

    /// The slab index of `id` if it names a pending timer.
    fn live(&self, id: TimerId) -> Option<u32> {
        let e = self.entries.get(id.index as usize)?;
        (e.gen == id.gen && e.value.is_some()).then_some(id.index)
    }

    fn alloc(&mut self, value: T) -> u32 {
        if self.free_head != NIL {
            let index = self.free_head;
            let e = &mut self.entries[index as usize];
            self.free_head = e.next;
            e.value = Some(value);
            index
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("timer wheel slab exceeds u32 indices");
            self.entries.push(Entry {
                value: Some(value),
                tick: 0,
                gen: 0,
                prev: NIL,
                next: NIL,
                list: NO_LIST,
            });
            index
        }
    }

    /// Returns an unlinked entry, whose value has been taken, to the free
    /// list.
    fn release(&mut self, index: u32) {
        let e = &mut self.entries[index as usize];
        debug_assert!(e.value.is_none());
        e.gen = e.gen.wrapping_add(1);
        e.list = NO_LIST;
        e.prev = NIL;
        e.next = self.free_head;
        self.free_head = index;
    }

    fn link_back(&mut self, list: u16, index: u32) {
        let tick = self.entries[index as usize].tick;
        let l = &mut self.lists[list as usize];
        let tail = l.tail;
        l.tail = index;
        if tail == NIL {
            l.head = index;
            l.min.set(tick);
            l.stale.set(false);
            if list < DUE {
                self.occupied[list as usize / SLOTS] |= 1 << (list as usize % SLOTS);
            }
        } else {
            if tick < l.min.get() {
                l.min.set(tick);
            }
            self.entries[tail as usize].next = index;
        }
        let e = &mut self.entries[index as usize];
        e.prev = tail;
        e.next = NIL;
        e.list = list;
    }

    fn unlink(&mut self, index: u32) {
        let Entry {
            prev,
            next,
            list,
            tick,
            ..
        } = self.entries[index as usize];
        let l = &mut self.lists[list as usize];
        if prev == NIL {
            l.head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            l.tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if l.head == NIL {
            if list < DUE {
                self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
            }
        } else if tick == l.min.get() {
            l.stale.set(true);
        }
    }

    /// Detaches a whole list, leaving it empty, and returns its head.
    fn take_list(&mut self, list: u16) -> u32 {
        let l = &mut self.lists[list as usize];
        let head = l.head;
        l.head = NIL;
        l.tail = NIL;
        if list < DUE {
            self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
        }
        head
    }

    /// Fires every entry of `list`, front to back.
    fn fire(&mut self, list: u16, out: &mut Vec<T>) {
        let mut i = self.take_list(list);
        while i != NIL {
            let e = &mut self.entries[i as usize];
            let next = e.next;
            if let Some(value) = e.value.take() {
                out.push(value);
            }
            self.release(i);
            self.len -= 1;
            i = next;
        }
    }

    /// Re-inserts every entry of `list`, front to back, at its level for the
    /// current `elapsed`.
    fn cascade(&mut self, list: u16) {
        let mut i = self.take_list(list);
        while i != NIL {
            let e = &self.entries[i as usize];
            let next = e.next;
            let to = self.list_for(e.tick);
            self.link_back(to, i);
            i = next;
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
