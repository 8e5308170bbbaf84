//! TIME-WAIT records: what is left of a connection the application closed
//! once it reaches TIME-WAIT (RFC 9293 §3.10.7.4; the seed notes' 2MSL).
//!
//! A record holds only what the rules still need — the 4-tuple, the
//! sequence numbers to re-ACK a retransmitted FIN, the timestamp state for
//! PAWS and RFC 6191 reuse, and the expiry — in 40 bytes, with no buffers.
//! Records live in a FIFO ring in order of expiry (every record lives 2MSL,
//! so insertion order is expiry order); a hash table of ring positions finds
//! them by 4-tuple. Expiry pops the front: O(1), no timer per record.
//!
//! Never: keeps data, allocates per segment, or lets a record outlive 2MSL
//! (a restart moves it to the back with a fresh 2MSL).

use core::hash::BuildHasher;
use std::collections::VecDeque;

use hashbrown::HashTable;

use super::endpoint::FourTuple;
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr, TcpTimestamp};

const FLAG_TIMESTAMPS: u8 = 1;
const FLAG_DEAD: u8 = 2;

/// One connection in TIME-WAIT. 40 bytes.
#[derive(Clone, Copy, Debug)]
pub struct TimeWaitRecord {
    pub tuple: FourTuple,
    /// Our SND.NXT (= SND.MAX): the sequence number of our ACKs.
    pub snd_nxt: SeqNumber,
    /// RCV.NXT: just past the peer's FIN.
    pub rcv_nxt: SeqNumber,
    /// RFC 7323 TS.Recent: the peer's newest TSval.
    pub ts_recent: u32,
    /// Our per-connection TSval offset (RFC 7323 §5.4).
    pub ts_offset: u32,
    /// The last TSval we sent: a reused tuple's SYN must exceed it
    /// (RFC 6191).
    pub last_tsval: u32,
    /// Expiry in milliseconds of the endpoint clock (wrapping).
    expires_ms: u32,
    /// The window field our ACKs carry (already scaled down).
    pub window: u16,
    flags: u8,
}

impl TimeWaitRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tuple: FourTuple,
        snd_nxt: SeqNumber,
        rcv_nxt: SeqNumber,
        timestamps: Option<(u32, u32, u32)>,
        window: u16,
        expires: Instant,
    ) -> TimeWaitRecord {
        let (ts_recent, ts_offset, last_tsval) = timestamps.unwrap_or((0, 0, 0));
        TimeWaitRecord {
            tuple,
            snd_nxt,
            rcv_nxt,
            ts_recent,
            ts_offset,
            last_tsval,
            // Rounded up: a record never expires before its 2MSL.
            expires_ms: expires.total_micros().div_ceil(1000) as u32,
            window,
            flags: if timestamps.is_some() {
                FLAG_TIMESTAMPS
            } else {
                0
            },
        }
    }

    pub fn timestamps(&self) -> bool {
        self.flags & FLAG_TIMESTAMPS != 0
    }

    fn dead(&self) -> bool {
        self.flags & FLAG_DEAD != 0
    }

    fn expired(&self, now: Instant) -> bool {
        (now.total_millis() as u32).wrapping_sub(self.expires_ms) as i32 >= 0
    }

    /// The ACK this record sends: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, with
    /// timestamps if the connection had them. Updates `last_tsval`.
    pub fn ack(&mut self, now: Instant) -> TcpRepr<'static> {
        let mut options = TcpOptions::default();
        if self.timestamps() {
            let tsval = (now.total_millis() as u32).wrapping_add(self.ts_offset);
            self.last_tsval = tsval;
            options.timestamp = Some(TcpTimestamp {
                tsval,
                tsecr: self.ts_recent,
            });
        }
        TcpRepr {
            src_port: self.tuple.local.port(),
            dst_port: self.tuple.remote.port(),
            seq_number: self.snd_nxt,
            ack_number: self.rcv_nxt,
            flags: TcpFlags::ACK,
            window_len: self.window,
            urgent_pointer: 0,
            options,
            payload: &[],
        }
    }

    /// RFC 6191 §2 / RFC 1122 §4.2.2.13: may this SYN open a new connection
    /// on the tuple? With timestamps, only if its TSval is newer than
    /// TS.Recent; without, only if its sequence number is beyond RCV.NXT.
    pub fn accepts_syn(&self, syn: &TcpRepr<'_>) -> bool {
        if self.timestamps() {
            match syn.options.timestamp {
                Some(ts) => (ts.tsval.wrapping_sub(self.ts_recent) as i32) > 0,
                None => false,
            }
        } else {
            syn.seq_number > self.rcv_nxt
        }
    }

    /// May we reuse the tuple for an active open whose SYN will carry
    /// `tsval`? Only with timestamps and a TSval above every one the old
    /// connection sent (RFC 6191's condition, seen from our side), so the
    /// peer's PAWS tells old segments from new ones.
    pub fn allows_active_reuse(&self, tsval: u32) -> bool {
        self.timestamps() && (tsval.wrapping_sub(self.last_tsval) as i32) > 0
    }
}

/// What to do with a segment that reached a TIME-WAIT record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TimeWaitVerdict {
    /// Nothing to send.
    Drop,
    /// Answer with the record's ACK.
    Ack,
    /// A retransmitted FIN: ACK it and restart 2MSL.
    AckAndRestart,
    /// An acceptable new SYN (RFC 6191): the record goes, a new connection
    /// may start.
    NewConnection,
}

/// RFC 9293 §3.10.7.4 in TIME-WAIT, RFC 1337 and RFC 6191.
pub fn judge(record: &TimeWaitRecord, seg: &TcpRepr<'_>) -> TimeWaitVerdict {
    let f = seg.flags;
    if f.rst() {
        // RFC 1337: no TIME-WAIT assassination.
        return TimeWaitVerdict::Drop;
    }
    if f.syn() && !f.ack() {
        return if record.accepts_syn(seg) {
            TimeWaitVerdict::NewConnection
        } else {
            TimeWaitVerdict::Ack
        };
    }
    // PAWS (RFC 7323 §5): an old duplicate is dropped with an ACK.
    if record.timestamps() {
        if let Some(ts) = seg.options.timestamp {
            if (ts.tsval.wrapping_sub(record.ts_recent) as i32) < 0 {
                return TimeWaitVerdict::Ack;
            }
        }
    }
    if f.fin() && seg.seq_number + seg.segment_len() == record.rcv_nxt {
        return TimeWaitVerdict::AckAndRestart;
    }
    if seg.segment_len() > 0 || f.syn() {
        return TimeWaitVerdict::Ack;
    }
    // A bare ACK (a duplicate of the peer's last one): never answer it, or
    // two TIME-WAIT ends could ACK each other forever.
    TimeWaitVerdict::Drop
}

/// Records in fixed-size chunks, so the ring never holds more than one
/// spare chunk (a doubling `VecDeque` would waste up to half its memory).
struct ChunkRing {
    chunks: VecDeque<Vec<TimeWaitRecord>>,
    /// Records already popped from the first chunk.
    skip: usize,
    len: usize,
}

const CHUNK: usize = 1024;

impl ChunkRing {
    fn new() -> ChunkRing {
        ChunkRing {
            chunks: VecDeque::new(),
            skip: 0,
            len: 0,
        }
    }
    fn len(&self) -> usize {
        self.len
    }
    fn push_back(&mut self, r: TimeWaitRecord) {
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push_back(Vec::with_capacity(CHUNK));
        }
        self.chunks.back_mut().expect("just ensured").push(r);
        self.len += 1;
    }
    fn front(&self) -> Option<&TimeWaitRecord> {
        (self.len > 0).then(|| &self[0])
    }
    fn pop_front(&mut self) -> Option<TimeWaitRecord> {
        if self.len == 0 {
            return None;
        }
        let r = self.chunks[0][self.skip];
        self.skip += 1;
        self.len -= 1;
        if self.skip == self.chunks[0].len() {
            if self.chunks.len() > 1 {
                self.chunks.pop_front();
            } else {
                self.chunks[0].clear();
            }
            self.skip = 0;
        }
        Some(r)
    }
    fn memory_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity()).sum::<usize>()
            * core::mem::size_of::<TimeWaitRecord>()
            + self.chunks.capacity() * core::mem::size_of::<Vec<TimeWaitRecord>>()
    }
}

impl core::ops::Index<usize> for ChunkRing {
    type Output = TimeWaitRecord;
    fn index(&self, i: usize) -> &TimeWaitRecord {
        let j = self.skip + i;
        &self.chunks[j / CHUNK][j % CHUNK]
    }
}

impl core::ops::IndexMut<usize> for ChunkRing {
    fn index_mut(&mut self, i: usize) -> &mut TimeWaitRecord {
        let j = self.skip + i;
        &mut self.chunks[j / CHUNK][j % CHUNK]
    }
}

/// The TIME-WAIT records of one endpoint.
pub struct TimeWaitTable<S> {
    ring: ChunkRing,
    /// Absolute position of `ring[0]`.
    head: u32,
    /// Ring positions of live records, keyed by their tuple's hash.
    index: HashTable<u32>,
    hasher: S,
    live: usize,
    two_msl: Duration,
}

impl<S: BuildHasher> TimeWaitTable<S> {
    pub fn new(hasher: S, two_msl: Duration) -> Self {
        TimeWaitTable {
            ring: ChunkRing::new(),
            head: 0,
            index: HashTable::new(),
            hasher,
            live: 0,
            two_msl,
        }
    }

    /// Live records.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes held by the records and the index, capacity included.
    pub fn memory_bytes(&self) -> usize {
        self.ring.memory_bytes() + self.index.capacity() * (core::mem::size_of::<u32>() + 1)
    }

    fn slot(&self, pos: u32) -> usize {
        pos.wrapping_sub(self.head) as usize
    }

    fn find_pos(&self, tuple: &FourTuple) -> Option<u32> {
        let hash = self.hasher.hash_one(tuple);
        let ring = &self.ring;
        let head = self.head;
        self.index
            .find(hash, |&pos| {
                ring[pos.wrapping_sub(head) as usize].tuple == *tuple
            })
            .copied()
    }

    pub fn get(&self, tuple: &FourTuple) -> Option<&TimeWaitRecord> {
        let pos = self.find_pos(tuple)?;
        Some(&self.ring[self.slot(pos)])
    }

    pub fn get_mut(&mut self, tuple: &FourTuple) -> Option<&mut TimeWaitRecord> {
        let pos = self.find_pos(tuple)?;
        let slot = self.slot(pos);
        Some(&mut self.ring[slot])
    }

    /// Adds a record (replacing a live one for the same tuple).
    pub fn insert(&mut self, record: TimeWaitRecord) {
        self.remove(&record.tuple);
        self.insert_new(record);
    }

    /// Adds a record for a tuple that has none: a connection's own, since
    /// opening it removed any older record for its tuple (one lookup less
    /// than [`insert`](Self::insert)).
    pub fn insert_new(&mut self, record: TimeWaitRecord) {
        debug_assert!(
            self.find_pos(&record.tuple).is_none(),
            "already in TIME-WAIT"
        );
        let pos = self.head.wrapping_add(self.ring.len() as u32);
        self.ring.push_back(record);
        let hash = self.hasher.hash_one(record.tuple);
        let (ring, head, hasher) = (&self.ring, self.head, &self.hasher);
        self.index.insert_unique(hash, pos, |&p| {
            hasher.hash_one(ring[p.wrapping_sub(head) as usize].tuple)
        });
        self.live += 1;
    }

    /// One lookup for "is `tuple` in TIME-WAIT, and may it go?": `None` if
    /// there is no record; otherwise `take` judges the record, which is
    /// removed and returned as `Some(Ok(..))` if it says so, or kept
    /// (`Some(Err(()))`).
    pub fn take_if(
        &mut self,
        tuple: &FourTuple,
        take: impl FnOnce(&TimeWaitRecord) -> bool,
    ) -> Option<Result<TimeWaitRecord, ()>> {
        let hash = self.hasher.hash_one(tuple);
        let (ring, head) = (&self.ring, self.head);
        let entry = self
            .index
            .find_entry(hash, |&pos| {
                ring[pos.wrapping_sub(head) as usize].tuple == *tuple
            })
            .ok()?;
        let slot = entry.get().wrapping_sub(head) as usize;
        if !take(&ring[slot]) {
            return Some(Err(()));
        }
        entry.remove();
        let rec = &mut self.ring[slot];
        rec.flags |= FLAG_DEAD;
        self.live -= 1;
        Some(Ok(*rec))
    }

    /// Removes the record for `tuple`, returning it.
    pub fn remove(&mut self, tuple: &FourTuple) -> Option<TimeWaitRecord> {
        self.take_if(tuple, |_| true)?.ok()
    }

    /// Restarts 2MSL for `tuple` from `now` (a retransmitted FIN).
    pub fn restart(&mut self, tuple: &FourTuple, now: Instant) {
        if let Some(mut rec) = self.remove(tuple) {
            rec.flags &= !FLAG_DEAD;
            rec.expires_ms = (now + self.two_msl).total_micros().div_ceil(1000) as u32;
            self.insert(rec);
        }
    }

    /// When the oldest record expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.ring
            .front()
            .map(|r| Instant::from_millis(r.expires_ms as u64).max(Instant::ZERO))
    }

    /// Would [`expire`](Self::expire) at `now` remove anything?
    #[inline]
    pub fn due(&self, now: Instant) -> bool {
        self.ring
            .front()
            .is_some_and(|front| front.dead() || front.expired(now))
    }

    /// Drops every record whose 2MSL is over, handing each live one to
    /// `gone`. Returns how many live records expired.
    pub fn expire(&mut self, now: Instant, mut gone: impl FnMut(&TimeWaitRecord)) -> usize {
        let mut n = 0;
        while let Some(front) = self.ring.front() {
            if !front.dead() && !front.expired(now) {
                break;
            }
            let rec = self.ring.pop_front().expect("front exists");
            if !rec.dead() {
                let hash = self.hasher.hash_one(rec.tuple);
                let head = self.head;
                if let Ok(e) = self.index.find_entry(hash, |&p| p == head) {
                    e.remove();
                }
                self.live -= 1;
                n += 1;
                gone(&rec);
            }
            self.head = self.head.wrapping_add(1);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, SocketAddrV4};

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), port),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 2), 80),
        }
    }

    fn rec(port: u16, expires: Instant) -> TimeWaitRecord {
        TimeWaitRecord::new(
            tuple(port),
            SeqNumber(100),
            SeqNumber(200),
            Some((5000, 7, 9000)),
            512,
            expires,
        )
    }

    fn table() -> TimeWaitTable<ahash::RandomState> {
        TimeWaitTable::new(
            ahash::RandomState::with_seeds(1, 2, 3, 4),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn a_record_is_40_bytes() {
        assert_eq!(core::mem::size_of::<TimeWaitRecord>(), 40);
    }

    #[test]
    fn records_expire_in_order_and_never_early() {
        let mut t = table();
        for i in 0..10u16 {
            t.insert(rec(1000 + i, Instant::from_secs(60 + i as u64)));
        }
        assert_eq!(t.len(), 10);
        let mut gone = Vec::new();
        t.expire(Instant::from_millis(62_999), |r| {
            gone.push(r.tuple.local.port())
        });
        assert_eq!(gone, [1000, 1001, 1002]);
        assert!(t.get(&tuple(1002)).is_none());
        assert!(t.get(&tuple(1003)).is_some());
        assert_eq!(t.next_expiry(), Some(Instant::from_secs(63)));
    }

    #[test]
    fn thousands_of_records_span_chunks_and_expire_in_order() {
        let mut t = table();
        for i in 0..3000u16 {
            t.insert(rec(i, Instant::from_millis(60_000 + i as u64)));
        }
        t.remove(&tuple(1500));
        assert!(t.get(&tuple(2999)).is_some());
        let mut gone = Vec::new();
        t.expire(Instant::from_millis(62_000), |r| {
            gone.push(r.tuple.local.port())
        });
        assert_eq!(gone.len(), 2000, "0..=2000 minus the removed one");
        assert_eq!(gone[0], 0);
        assert_eq!(*gone.last().unwrap(), 2000);
        assert!(!gone.contains(&1500));
        assert_eq!(t.len(), 999);
        // The first chunk went back; two remain, plus the index.
        assert!(t.memory_bytes() <= 2 * 1024 * 40 + 4096 * 5 + 1024);
    }

    #[test]
    fn removal_and_restart_keep_the_index_right() {
        let mut t = table();
        t.insert(rec(1, Instant::from_secs(60)));
        t.insert(rec(2, Instant::from_secs(61)));
        t.insert(rec(3, Instant::from_secs(62)));
        assert_eq!(t.remove(&tuple(2)).map(|r| r.rcv_nxt), Some(SeqNumber(200)));
        assert!(t.get(&tuple(2)).is_none());
        t.restart(&tuple(1), Instant::from_secs(30));
        assert_eq!(t.len(), 2);
        let mut gone = Vec::new();
        t.expire(Instant::from_secs(62), |r| gone.push(r.tuple.local.port()));
        assert_eq!(gone, [3], "1 was restarted to 90 s, 2 removed");
        t.expire(Instant::from_secs(90), |r| gone.push(r.tuple.local.port()));
        assert_eq!(gone, [3, 1]);
        assert!(t.is_empty());
    }

    #[test]
    fn syn_acceptance_follows_rfc_6191_and_rfc_1122() {
        let r = rec(1, Instant::from_secs(60));
        let mut syn = TcpRepr {
            src_port: 80,
            dst_port: 1,
            seq_number: SeqNumber(150),
            ack_number: SeqNumber(0),
            flags: TcpFlags::SYN,
            window_len: 1000,
            urgent_pointer: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        // Timestamps were used: a SYN without one, or with an old one, is
        // refused; a newer TSval is accepted whatever its sequence number.
        assert_eq!(judge(&r, &syn), TimeWaitVerdict::Ack);
        syn.options.timestamp = Some(TcpTimestamp {
            tsval: 4999,
            tsecr: 0,
        });
        assert_eq!(judge(&r, &syn), TimeWaitVerdict::Ack);
        syn.options.timestamp = Some(TcpTimestamp {
            tsval: 5001,
            tsecr: 0,
        });
        assert_eq!(judge(&r, &syn), TimeWaitVerdict::NewConnection);
        // Without timestamps: only a sequence number beyond RCV.NXT.
        let r = TimeWaitRecord::new(
            tuple(1),
            SeqNumber(100),
            SeqNumber(200),
            None,
            512,
            Instant::ZERO,
        );
        syn.options.timestamp = None;
        assert_eq!(judge(&r, &syn), TimeWaitVerdict::Ack);
        syn.seq_number = SeqNumber(201);
        assert_eq!(judge(&r, &syn), TimeWaitVerdict::NewConnection);
    }

    #[test]
    fn rst_is_ignored_fin_restarts_and_bare_acks_get_no_answer() {
        let r = TimeWaitRecord::new(
            tuple(1),
            SeqNumber(100),
            SeqNumber(200),
            None,
            512,
            Instant::ZERO,
        );
        let mut seg = TcpRepr {
            src_port: 80,
            dst_port: 1,
            seq_number: SeqNumber(199),
            ack_number: SeqNumber(100),
            flags: TcpFlags::FIN | TcpFlags::ACK,
            window_len: 1000,
            urgent_pointer: 0,
            options: TcpOptions::default(),
            payload: &[],
        };
        assert_eq!(judge(&r, &seg), TimeWaitVerdict::AckAndRestart);
        seg.flags = TcpFlags::RST;
        assert_eq!(judge(&r, &seg), TimeWaitVerdict::Drop);
        seg.flags = TcpFlags::ACK;
        seg.seq_number = SeqNumber(200);
        assert_eq!(judge(&r, &seg), TimeWaitVerdict::Drop);
        seg.payload = b"late data";
        assert_eq!(judge(&r, &seg), TimeWaitVerdict::Ack);
    }

    #[test]
    fn active_reuse_needs_timestamps_and_a_newer_tsval() {
        let r = rec(1, Instant::from_secs(60));
        assert!(!r.allows_active_reuse(9000));
        assert!(r.allows_active_reuse(9001));
        let r = TimeWaitRecord::new(
            tuple(1),
            SeqNumber(100),
            SeqNumber(200),
            None,
            512,
            Instant::ZERO,
        );
        assert!(!r.allows_active_reuse(u32::MAX / 2));
    }
}
