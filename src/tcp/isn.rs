//! Initial sequence numbers per RFC 6528 §3:
//! `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`,
//! where M is a 4 µs clock and F a keyed PRF (SipHash-2-4 here).

use core::hash::Hasher;
use core::net::SocketAddrV4;

use siphasher::sip::SipHasher24;

use crate::time::Instant;
use crate::wire::SeqNumber;

/// Generates ISNs; the key comes from configuration (per host, secret).
#[derive(Clone)]
pub struct IsnGenerator {
    key: [u8; 16],
}

impl IsnGenerator {
    pub fn new(key: [u8; 16]) -> IsnGenerator {
        IsnGenerator { key }
    }

    /// F(): the keyed hash of the 4-tuple, without the clock term. Also used
    /// to derive per-connection timestamp offsets (RFC 7323 §5.4).
    pub fn hash(&self, local: SocketAddrV4, remote: SocketAddrV4, salt: u8) -> u32 {
        self.hash64(local, remote, salt) as u32
    }

    fn hash64(&self, local: SocketAddrV4, remote: SocketAddrV4, salt: u8) -> u64 {
        // One write of the 13 bytes (the same byte stream as writing the
        // pieces one by one: siphasher takes integers little-endian).
        let mut bytes = [0u8; 13];
        bytes[0..4].copy_from_slice(&local.ip().octets());
        bytes[4..6].copy_from_slice(&local.port().to_le_bytes());
        bytes[6..10].copy_from_slice(&remote.ip().octets());
        bytes[10..12].copy_from_slice(&remote.port().to_le_bytes());
        bytes[12] = salt;
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(&bytes);
        h.finish()
    }

    /// RFC 6528 §3: M is a timer ticking every 4 µs.
    pub fn isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> SeqNumber {
        self.isn_and_ts_offset(now, local, remote).0
    }

    /// The ISN and the connection's timestamp offset (RFC 7323 §5.4) from
    /// one keyed hash: its low half is F() for the ISN, its high half the
    /// offset. One SipHash per connection instead of two.
    pub fn isn_and_ts_offset(
        &self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> (SeqNumber, u32) {
        let h = self.hash64(local, remote, 0);
        let m = (now.total_micros() / 4) as u32;
        (SeqNumber(m.wrapping_add(h as u32)), (h >> 32) as u32)
    }

    /// The timestamp offset alone (for a TIME-WAIT reuse check before the
    /// connection exists); equal to `isn_and_ts_offset(..).1`.
    pub fn ts_offset(&self, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
        (self.hash64(local, remote, 0) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn tuple(port: u16) -> (SocketAddrV4, SocketAddrV4) {
        (
            SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 80),
            SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 2), port),
        )
    }

    #[test]
    fn one_write_hashes_as_the_pieces_did() {
        let g = IsnGenerator::new([9; 16]);
        for port in [1, 80, 40000, 65535] {
            let (l, r) = tuple(port);
            let mut h = SipHasher24::new_with_key(&g.key);
            h.write(&l.ip().octets());
            h.write_u16(l.port());
            h.write(&r.ip().octets());
            h.write_u16(r.port());
            h.write_u8(3);
            assert_eq!(g.hash64(l, r, 3), h.finish());
        }
    }

    #[test]
    fn isn_advances_with_the_4us_clock_and_differs_per_tuple_and_key() {
        let g = IsnGenerator::new([7; 16]);
        let (l, r) = tuple(40000);
        let a = g.isn(Instant::from_micros(0), l, r);
        let b = g.isn(Instant::from_micros(400), l, r);
        assert_eq!(b - a, 100);
        let (l2, r2) = tuple(40001);
        assert_ne!(g.isn(Instant::ZERO, l2, r2), a);
        assert_ne!(IsnGenerator::new([8; 16]).isn(Instant::ZERO, l, r), a);
    }
}
