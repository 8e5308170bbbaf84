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
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(&local.ip().octets());
        h.write_u16(local.port());
        h.write(&remote.ip().octets());
        h.write_u16(remote.port());
        h.write_u8(salt);
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
