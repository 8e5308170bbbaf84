//! Receive Side Scaling: the Toeplitz hash and the indirection table.
//!
//! Owns: the software model of the NIC's RSS function for IPv4/TCP (the
//! Microsoft Toeplitz hash over source address, destination address, source
//! port, destination port, all in network byte order, then the indirection
//! table indexed by the hash's low bits), and the choice of a local port for
//! an active open whose *reply* traffic the NIC steers to the opening core.
//!
//! Never: guesses the NIC's configuration. The key and indirection table
//! given here must be the ones programmed into the NIC (ethtool `-X`/`hkey`),
//! or the prediction is wrong and frames arrive on the wrong core (where they
//! take the slow cross-core mailbox). Never hashes anything but the 12-byte
//! IPv4/TCP input; never allocates after construction.
//!
//! The hash is linear over GF(2): each input bit XORs in the 32-bit window of
//! the key starting at that bit's position. So the contribution of a byte
//! depends only on its position and value, and [`Rss`] precomputes a
//! 12 x 256 table of `u32`s (12 KiB): a hash is 12 lookups and XORs. Port
//! search goes further: the first 10 input bytes are fixed during a search,
//! so each candidate port costs two lookups.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Length of an RSS key. Microsoft's specification fixes 40 bytes, enough for
/// the longest (IPv6 with ports, 36-byte) input.
pub const KEY_LEN: usize = 40;

/// The key in Microsoft's RSS verification suite, and the default of most
/// NIC drivers (Intel's among them) and DPDK.
pub const MICROSOFT_KEY: [u8; KEY_LEN] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Entries in the default indirection table, as on most NICs (Intel's 82599
/// and Linux's default for many drivers): the hash's low 7 bits index it.
pub const DEFAULT_INDIRECTION_ENTRIES: usize = 128;

/// Bytes of hash input for IPv4 with TCP: `src addr, dst addr, src port,
/// dst port`.
const V4_INPUT_LEN: usize = 12;

/// Why an indirection table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndirectionError {
    /// The table has no entries.
    Empty,
    /// NICs index the table with the hash's low bits, so its length must be
    /// a power of two.
    NotPowerOfTwo,
    /// More than 65 536 entries (NICs have at most a few thousand).
    TooLarge,
}

/// A software copy of a NIC's RSS configuration for IPv4/TCP.
#[derive(Clone)]
pub struct Rss {
    key: [u8; KEY_LEN],
    /// `table[p][b]`: the hash contribution of byte value `b` at input
    /// position `p`.
    table: Box<[[u32; 256]; V4_INPUT_LEN]>,
    /// Queue (core) for each value of `hash & mask`; its length is a power
    /// of two.
    indirection: Box<[u16]>,
    mask: u32,
    /// One more than the largest queue in `indirection`.
    queues: usize,
}

impl Rss {
    /// RSS with `key` and the default 128-entry indirection table spread
    /// round-robin over `queues` queues (entry `i` is queue `i % queues`,
    /// Linux's `ethtool_rxfh_indir_default`).
    ///
    /// # Panics
    /// If `queues` is 0 or above 65 536.
    pub fn new(key: [u8; KEY_LEN], queues: usize) -> Rss {
        assert!(
            (1..=1 << 16).contains(&queues),
            "RSS needs 1..=65536 queues, got {queues}"
        );
        let table: Vec<u16> = (0..DEFAULT_INDIRECTION_ENTRIES)
            .map(|i| (i % queues) as u16)
            .collect();
        Rss::with_indirection(key, &table).expect("default indirection table is valid")
    }

    /// RSS with `key` and an explicit indirection table (the one programmed
    /// into the NIC); the number of queues is one more than its largest
    /// entry.
    pub fn with_indirection(key: [u8; KEY_LEN], table: &[u16]) -> Result<Rss, IndirectionError> {
        if table.is_empty() {
            return Err(IndirectionError::Empty);
        }
        if !table.len().is_power_of_two() {
            return Err(IndirectionError::NotPowerOfTwo);
        }
        if table.len() > 1 << 16 {
            return Err(IndirectionError::TooLarge);
        }
        let queues = table.iter().copied().max().map_or(0, usize::from) + 1;
        Ok(Rss {
            key,
            table: contribution_table(&key),
            indirection: table.into(),
            mask: (table.len() - 1) as u32,
            queues,
        })
    }

    pub fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    pub fn indirection(&self) -> &[u16] {
        &self.indirection
    }

    /// Number of queues (cores) the indirection table spreads over.
    pub fn queues(&self) -> usize {
        self.queues
    }

    /// The Toeplitz hash of an IPv4/TCP packet as the NIC computes it: input
    /// `src, dst, src_port, dst_port` in network byte order.
    pub fn hash_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16) -> u32 {
        let s = src.octets();
        let d = dst.octets();
        let t = &self.table;
        self.hash_v4_addrs(s, d)
            ^ t[8][usize::from(src_port >> 8)]
            ^ t[9][usize::from(src_port & 0xff)]
            ^ t[10][usize::from(dst_port >> 8)]
            ^ t[11][usize::from(dst_port & 0xff)]
    }

    /// The queue (core) the NIC delivers a packet with this hash to.
    pub fn queue_for_hash(&self, hash: u32) -> usize {
        usize::from(self.indirection[(hash & self.mask) as usize])
    }

    /// The queue (core) the NIC delivers this IPv4/TCP packet to.
    pub fn queue_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16) -> usize {
        self.queue_for_hash(self.hash_v4(src, dst, src_port, dst_port))
    }

    /// A local port for an active open from `local` to `remote` whose reply
    /// traffic lands on `core`, for which `is_free` holds.
    ///
    /// The NIC hashes the peer's packets, so the tuple hashed is the reply
    /// direction: source `remote`, destination `local` and the candidate
    /// port. (With a non-symmetric key such as [`MICROSOFT_KEY`] the hash of
    /// our own outgoing direction differs.) Candidates are scanned from
    /// `range.0 + start % len` upward through the inclusive `range`, wrapping
    /// once; a caller spreads its choices by varying `start` (a seeded draw,
    /// as RFC 6056 recommends for port selection). `is_free` is asked only
    /// about ports that already land on `core`, at most once each.
    ///
    /// `None` when `range` is empty (`range.0 > range.1`), `core` is not a
    /// queue of the indirection table, or no port qualifies.
    pub fn pick_port(
        &self,
        local: Ipv4Addr,
        remote: SocketAddrV4,
        core: usize,
        range: (u16, u16),
        start: u32,
        mut is_free: impl FnMut(u16) -> bool,
    ) -> Option<u16> {
        let (lo, hi) = range;
        if lo > hi || core >= self.queues {
            return None;
        }
        let len = u32::from(hi - lo) + 1;
        let t = &self.table;
        let rport = remote.port();
        let fixed = self.hash_v4_addrs(remote.ip().octets(), local.octets())
            ^ t[8][usize::from(rport >> 8)]
            ^ t[9][usize::from(rport & 0xff)];
        let first = start % len;
        (0..len)
            .map(|k| {
                let offset = first + k;
                let offset = if offset >= len { offset - len } else { offset };
                lo + offset as u16
            })
            .find(|&port| {
                let hash = fixed ^ t[10][usize::from(port >> 8)] ^ t[11][usize::from(port & 0xff)];
                self.queue_for_hash(hash) == core && is_free(port)
            })
    }

    fn hash_v4_addrs(&self, s: [u8; 4], d: [u8; 4]) -> u32 {
        let t = &self.table;
        t[0][usize::from(s[0])]
            ^ t[1][usize::from(s[1])]
            ^ t[2][usize::from(s[2])]
            ^ t[3][usize::from(s[3])]
            ^ t[4][usize::from(d[0])]
            ^ t[5][usize::from(d[1])]
            ^ t[6][usize::from(d[2])]
            ^ t[7][usize::from(d[3])]
    }
}

impl core::fmt::Debug for Rss {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.debug_struct("Rss")
            .field("queues", &self.queues)
            .field("indirection_entries", &self.indirection.len())
            .finish_non_exhaustive()
    }
}

/// The Toeplitz hash exactly as Microsoft's pseudocode states it, one input
/// bit at a time: for each set bit, XOR in the leftmost 32 bits of the key,
/// then shift the key left by one. Inputs longer than 36 bytes run past the
/// key and see zero bits. The reference the table-driven [`Rss::hash_v4`] is
/// tested (and benchmarked) against.
pub fn toeplitz_bitwise(key: &[u8; KEY_LEN], input: &[u8]) -> u32 {
    let mut result = 0u32;
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, &byte) in input.iter().enumerate() {
        let incoming = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= window;
            }
            window = (window << 1) | u32::from((incoming >> (7 - bit)) & 1);
        }
    }
    result
}

/// The 32 key bits starting at bit `offset` (bit 0 is the MSB of `key[0]`).
fn key_window(key: &[u8; KEY_LEN], offset: usize) -> u32 {
    let byte = offset / 8;
    let mut five = [0u8; 8];
    for (i, b) in five[3..].iter_mut().enumerate() {
        *b = key.get(byte + i).copied().unwrap_or(0);
    }
    // 40 bits in the low end of a u64; keep the 32 starting `offset % 8`
    // bits below its top.
    ((u64::from_be_bytes(five) << (offset % 8)) >> 8) as u32
}

fn contribution_table(key: &[u8; KEY_LEN]) -> Box<[[u32; 256]; V4_INPUT_LEN]> {
    let mut table = Box::new([[0u32; 256]; V4_INPUT_LEN]);
    for (pos, row) in table.iter_mut().enumerate() {
        for bit in 0..8 {
            let window = key_window(key, pos * 8 + bit);
            let mask = 0x80u8 >> bit;
            for (value, cell) in row.iter_mut().enumerate() {
                if value as u8 & mask != 0 {
                    *cell ^= window;
                }
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;
    use proptest::prelude::*;

    /// Microsoft's "Verifying the RSS Hash Calculation" table for IPv4:
    /// (destination, source, IPv4-only hash, IPv4-with-TCP hash). The hash
    /// input order is source address, destination address, source port,
    /// destination port.
    const MS_V4: [(&str, &str, u32, u32); 5] = [
        (
            "161.142.100.80:1766",
            "66.9.149.187:2794",
            0x323e_8fc2,
            0x51cc_c178,
        ),
        (
            "65.69.140.83:4739",
            "199.92.111.2:14230",
            0xd718_262a,
            0xc626_b0ea,
        ),
        (
            "12.22.207.184:38024",
            "24.19.198.95:12898",
            0xd2d0_a5de,
            0x5c2b_394a,
        ),
        (
            "209.142.163.6:2217",
            "38.27.205.30:48228",
            0x8298_9176,
            0xafc7_327f,
        ),
        (
            "202.188.127.2:1303",
            "153.39.163.191:44251",
            0x5d18_09c5,
            0x10e8_28a2,
        ),
    ];

    fn v4_input(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> [u8; 12] {
        let mut input = [0u8; 12];
        input[..4].copy_from_slice(&src.octets());
        input[4..8].copy_from_slice(&dst.octets());
        input[8..10].copy_from_slice(&sport.to_be_bytes());
        input[10..].copy_from_slice(&dport.to_be_bytes());
        input
    }

    #[test]
    fn microsoft_verification_vectors_ipv4_with_tcp() {
        let rss = Rss::new(MICROSOFT_KEY, 1);
        for (dst, src, _, want) in MS_V4 {
            let dst: SocketAddrV4 = dst.parse().unwrap();
            let src: SocketAddrV4 = src.parse().unwrap();
            let got = rss.hash_v4(*src.ip(), *dst.ip(), src.port(), dst.port());
            assert_eq!(got, want, "{src} -> {dst}: {got:#010x}");
            let input = v4_input(*src.ip(), *dst.ip(), src.port(), dst.port());
            assert_eq!(toeplitz_bitwise(&MICROSOFT_KEY, &input), want);
        }
    }

    #[test]
    fn microsoft_verification_vectors_ipv4_only_check_the_reference() {
        for (dst, src, want, _) in MS_V4 {
            let dst: SocketAddrV4 = dst.parse().unwrap();
            let src: SocketAddrV4 = src.parse().unwrap();
            let input = v4_input(*src.ip(), *dst.ip(), 0, 0);
            assert_eq!(toeplitz_bitwise(&MICROSOFT_KEY, &input[..8]), want);
        }
    }

    #[test]
    fn key_windows_slide_one_bit_at_a_time() {
        assert_eq!(key_window(&MICROSOFT_KEY, 0), 0x6d5a_56da);
        assert_eq!(key_window(&MICROSOFT_KEY, 8), 0x5a56_da25);
        assert_eq!(key_window(&MICROSOFT_KEY, 1), 0xdab4_adb4);
        assert_eq!(key_window(&MICROSOFT_KEY, 4), 0xd5a5_6da2);
        assert_eq!(key_window(&MICROSOFT_KEY, 288), 0xbeac_01fa);
    }

    proptest! {
        #[test]
        fn table_hash_equals_bitwise_reference(
            key in prop::array::uniform32(any::<u8>()),
            tail in prop::array::uniform8(any::<u8>()),
            src in any::<u32>(), dst in any::<u32>(),
            sport in any::<u16>(), dport in any::<u16>(),
        ) {
            let mut full = [0u8; KEY_LEN];
            full[..32].copy_from_slice(&key);
            full[32..].copy_from_slice(&tail);
            let rss = Rss::new(full, 4);
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let input = v4_input(src, dst, sport, dport);
            prop_assert_eq!(rss.hash_v4(src, dst, sport, dport), toeplitz_bitwise(&full, &input));
        }
    }

    #[test]
    fn default_indirection_is_128_entries_round_robin() {
        let rss = Rss::new(MICROSOFT_KEY, 3);
        assert_eq!(rss.indirection().len(), DEFAULT_INDIRECTION_ENTRIES);
        assert_eq!(rss.queues(), 3);
        for (i, &q) in rss.indirection().iter().enumerate() {
            assert_eq!(usize::from(q), i % 3);
        }
        // Only the low 7 bits of the hash pick the entry.
        assert_eq!(rss.queue_for_hash(0xffff_ff80 | 4), 1);
        assert_eq!(rss.queue_for_hash(127), 127 % 3);
    }

    #[test]
    fn explicit_indirection_table_is_checked() {
        assert_eq!(
            Rss::with_indirection(MICROSOFT_KEY, &[]).unwrap_err(),
            IndirectionError::Empty
        );
        assert_eq!(
            Rss::with_indirection(MICROSOFT_KEY, &[0, 1, 2]).unwrap_err(),
            IndirectionError::NotPowerOfTwo
        );
        let rss = Rss::with_indirection(MICROSOFT_KEY, &[3, 3, 0, 1]).unwrap();
        assert_eq!(rss.queues(), 4);
        assert_eq!(rss.queue_for_hash(0x51cc_c178), 3);
        assert_eq!(rss.queue_for_hash(0x51cc_c17a), 0);
        assert_eq!(rss.queue_for_hash(0x51cc_c17b), 1);
    }

    #[test]
    #[should_panic(expected = "RSS needs")]
    fn zero_queues_is_refused() {
        Rss::new(MICROSOFT_KEY, 0);
    }

    #[test]
    fn random_tuples_spread_evenly_over_queues() {
        for queues in [2usize, 4, 8] {
            let rss = Rss::new(MICROSOFT_KEY, queues);
            let mut rng = Rng::new(queues as u64);
            let mut counts = vec![0u32; queues];
            let n = 200_000u32;
            for _ in 0..n {
                let src = Ipv4Addr::from(rng.next_u32());
                let dst = Ipv4Addr::from(rng.next_u32());
                let q = rss.queue_v4(src, dst, rng.next_u32() as u16, rng.next_u32() as u16);
                counts[q] += 1;
            }
            let expected = f64::from(n) / queues as f64;
            for (q, &c) in counts.iter().enumerate() {
                let dev = (f64::from(c) - expected).abs() / expected;
                assert!(dev < 0.03, "{queues} queues: queue {q} got {c}");
            }
        }
    }

    #[test]
    fn one_server_many_client_ports_spread_evenly() {
        // The passive-open case: one local address and port, one client
        // address, ephemeral client ports.
        let rss = Rss::new(MICROSOFT_KEY, 4);
        let client = Ipv4Addr::new(10, 0, 0, 2);
        let server = Ipv4Addr::new(10, 0, 0, 1);
        let mut counts = [0u32; 4];
        for port in 32_768..=60_999u16 {
            counts[rss.queue_v4(client, server, port, 80)] += 1;
        }
        let expected = 28_232.0 / 4.0;
        for c in counts {
            assert!(
                (f64::from(c) - expected).abs() / expected < 0.05,
                "{counts:?}"
            );
        }
    }

    fn remote() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 80), 443)
    }

    #[test]
    fn picked_port_reply_hash_lands_on_requested_core() {
        let local = Ipv4Addr::new(198, 51, 100, 7);
        let mut rng = Rng::new(9);
        for queues in [1usize, 2, 3, 4, 8] {
            let rss = Rss::new(MICROSOFT_KEY, queues);
            for core in 0..queues {
                for _ in 0..50 {
                    let remote =
                        SocketAddrV4::new(Ipv4Addr::from(rng.next_u32()), rng.next_u32() as u16);
                    let start = rng.next_u32();
                    let port = rss
                        .pick_port(local, remote, core, (32_768, 60_999), start, |_| true)
                        .expect("a free port exists");
                    assert!((32_768..=60_999).contains(&port));
                    // The NIC sees the reply: remote -> local:port.
                    let reply = rss.queue_v4(*remote.ip(), local, remote.port(), port);
                    assert_eq!(reply, core);
                }
            }
        }
    }

    #[test]
    fn pick_port_returns_first_qualifying_port_from_start_wrapping() {
        let rss = Rss::new(MICROSOFT_KEY, 4);
        let local = Ipv4Addr::new(198, 51, 100, 7);
        let r = remote();
        let range = (1_000u16, 1_999u16);
        let on_core = |p: u16| rss.queue_v4(*r.ip(), local, r.port(), p) == 2;
        let even = |p: u16| p % 2 == 0;
        for start in [0u32, 1, 500, 999, 1_000, 123_456_789, u32::MAX] {
            let first = u32::from(range.0) + start % 1_000;
            let want = (0..1_000)
                .map(|k| ((first - 1_000 + k) % 1_000 + 1_000) as u16)
                .find(|&p| on_core(p) && even(p));
            let got = rss.pick_port(local, r, 2, range, start, even);
            assert_eq!(got, want, "start {start}");
            assert!(got.is_some());
        }
    }

    #[test]
    fn pick_port_asks_predicate_only_about_ports_on_core_once_each() {
        let rss = Rss::new(MICROSOFT_KEY, 4);
        let local = Ipv4Addr::new(198, 51, 100, 7);
        let r = remote();
        let mut asked = Vec::new();
        let got = rss.pick_port(local, r, 1, (40_000, 40_999), 77, |p| {
            asked.push(p);
            false
        });
        assert_eq!(got, None);
        assert!(!asked.is_empty());
        let mut dedup = asked.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), asked.len());
        for p in asked {
            assert_eq!(rss.queue_v4(*r.ip(), local, r.port(), p), 1);
        }
    }

    #[test]
    fn pick_port_returns_none_when_nothing_qualifies() {
        let rss = Rss::new(MICROSOFT_KEY, 4);
        let local = Ipv4Addr::new(198, 51, 100, 7);
        let r = remote();
        assert_eq!(rss.pick_port(local, r, 0, (1, 65_535), 0, |_| false), None);
        assert_eq!(rss.pick_port(local, r, 4, (1, 65_535), 0, |_| true), None);
        assert_eq!(
            rss.pick_port(local, r, 0, (2_000, 1_999), 0, |_| true),
            None
        );
        // A one-port range either lands on the core or not.
        let p = 5_000u16;
        let core = rss.queue_v4(*r.ip(), local, r.port(), p);
        assert_eq!(rss.pick_port(local, r, core, (p, p), 9, |_| true), Some(p));
        let other = (core + 1) % 4;
        assert_eq!(rss.pick_port(local, r, other, (p, p), 9, |_| true), None);
    }

    #[test]
    fn pick_port_covers_the_whole_u16_range() {
        let rss = Rss::new(MICROSOFT_KEY, 2);
        let local = Ipv4Addr::new(198, 51, 100, 7);
        let r = remote();
        let mut count = 0;
        let got = rss.pick_port(local, r, 0, (0, u16::MAX), u32::MAX, |_| {
            count += 1;
            false
        });
        assert_eq!(got, None);
        let want = (0..=u16::MAX)
            .filter(|&p| rss.queue_v4(*r.ip(), local, r.port(), p) == 0)
            .count();
        assert_eq!(count, want);
    }
}
