//! A Linux tap device (`/dev/net/tun` with `IFF_TAP | IFF_NO_PI`): Ethernet
//! frames in and out of the kernel through a file descriptor.
//!
//! The interface is created by `TUNSETIFF` and is not persistent: it
//! disappears when its last descriptor closes, so a crash leaves nothing
//! behind. With several queues (`IFF_MULTI_QUEUE`) each queue is its own
//! descriptor and its own [`TapDevice`], so each core can own one.
//!
//! The kernel side of the tap is an ordinary interface (`ip addr add`,
//! `ip link set up`, or move it into a namespace); this device is the wire
//! end: what [`Device::transmit`] writes, the kernel receives, and what the
//! kernel sends out of the interface, [`Device::receive`] reads.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use super::{check_ifname, Fd};
use crate::phy::{Device, DeviceCapabilities, DeviceCounters, FrameBatch};
use crate::time::Instant;
use crate::wire::EthernetAddress;

/// `TUNSETIFF` = `_IOW('T', 202, int)` (linux/if_tun.h).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Ethernet frames (not IP packets).
const IFF_TAP: libc::c_short = 0x0002;
/// No 4-byte packet-information header before each frame.
const IFF_NO_PI: libc::c_short = 0x1000;
/// One descriptor per queue, all attached to the same interface.
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

/// The IP MTU this device carries.
const MTU: usize = 1500;
/// Largest frame accepted on receive: MTU + Ethernet header + one VLAN tag.
const MAX_FRAME: usize = MTU + 14 + 4;
/// Receive buffer size: one more byte than the largest frame, so a read that
/// fills it reveals an oversized (truncated) frame.
const RX_BUF: usize = MAX_FRAME + 1;

/// `struct ifreq` as `TUNSETIFF` uses it: the name and the flags (the rest of
/// the 40-byte union is padding here).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Per-queue counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames larger than MTU + 18 bytes, dropped.
    pub rx_oversize: u64,
    /// read() failures other than EAGAIN/EINTR.
    pub rx_errors: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames not written because the queue was full (EAGAIN).
    pub tx_drops: u64,
    /// write() failures other than EAGAIN/EINTR (e.g. EIO: interface down),
    /// or frames larger than MTU + 18 bytes.
    pub tx_errors: u64,
}

impl TapStats {
    /// The device-neutral view: receive drops are oversize frames; transmit
    /// drops are frames refused for a full queue plus failed or oversize
    /// writes. A tap has no fill ring and no kicks.
    pub fn device_counters(&self) -> DeviceCounters {
        DeviceCounters {
            rx_frames: self.rx_frames,
            rx_bytes: self.rx_bytes,
            tx_frames: self.tx_frames,
            tx_bytes: self.tx_bytes,
            rx_dropped: self.rx_oversize,
            tx_dropped: self.tx_drops + self.tx_errors,
            ..DeviceCounters::default()
        }
    }
}

/// One queue of a tap interface.
#[derive(Debug)]
pub struct TapDevice {
    fd: Fd,
    name: String,
    mac: EthernetAddress,
    /// A buffer for the next read; swapped into the batch when a frame
    /// arrives, so steady state allocates nothing.
    spare: Vec<u8>,
    stats: TapStats,
}

impl TapDevice {
    /// Creates (or attaches to) tap interface `name` with `queues` queues and
    /// returns one non-blocking device per queue. `queues > 1` sets
    /// `IFF_MULTI_QUEUE`. `name` may contain `%d` for the kernel to number it;
    /// [`ifname`](Self::ifname) tells the name it got.
    ///
    /// The interface is left down and without addresses: configure the
    /// kernel side with `ip` (see [`super::netns`]).
    pub fn open(name: &str, queues: usize) -> io::Result<Vec<TapDevice>> {
        check_ifname(name)?;
        if queues == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "tap: at least one queue is needed",
            ));
        }
        let mut flags = IFF_TAP | IFF_NO_PI;
        if queues > 1 {
            flags |= IFF_MULTI_QUEUE;
        }
        let mut devices = Vec::with_capacity(queues);
        let mut actual = name.to_string();
        for q in 0..queues {
            let dev = Self::open_queue(&actual, flags)
                .map_err(|e| super::annotate(e, format_args!("tap {actual} queue {q}")))?;
            actual = dev.name.clone();
            devices.push(dev);
        }
        Ok(devices)
    }

    fn open_queue(name: &str, flags: libc::c_short) -> io::Result<TapDevice> {
        let path = c"/dev/net/tun";
        // SAFETY: `path` is a valid NUL-terminated string; open has no other
        // preconditions.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            let why = match e.kind() {
                io::ErrorKind::NotFound => "no /dev/net/tun (tun module not loaded?)",
                io::ErrorKind::PermissionDenied => {
                    "cannot open /dev/net/tun: permission denied (needs root or CAP_NET_ADMIN)"
                }
                _ => "cannot open /dev/net/tun",
            };
            return Err(super::annotate(e, why));
        }
        let fd = Fd(raw);
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` has its
        // layout (name, then the flags at the start of the 24-byte union,
        // 40 bytes in all) and lives across the call.
        let rc = unsafe { libc::ioctl(fd.raw(), TUNSETIFF, &mut req as *mut IfReqFlags) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            let why = match e.raw_os_error() {
                Some(libc::EPERM) => {
                    "TUNSETIFF: operation not permitted (needs root or CAP_NET_ADMIN)".to_string()
                }
                Some(libc::EBUSY) | Some(libc::EINVAL) => format!(
                    "TUNSETIFF: {name:?} exists and is not a tap with the same queue mode, \
                     or all its queues are taken"
                ),
                _ => "TUNSETIFF".to_string(),
            };
            return Err(super::annotate(e, why));
        }
        let len = req
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(req.name.len());
        let actual = String::from_utf8_lossy(&req.name[..len]).into_owned();
        Ok(TapDevice {
            mac: mac_for_name(&actual),
            name: actual,
            fd,
            spare: Vec::with_capacity(RX_BUF),
            stats: TapStats::default(),
        })
    }

    /// The MAC address flowlane uses on this link: locally administered
    /// (02:...), derived from the interface name, the same for every queue.
    /// The kernel side of the tap has its own, different address.
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// The interface name the kernel gave.
    pub fn ifname(&self) -> &str {
        &self.name
    }

    /// The queue's descriptor, for poll/epoll (readable when a frame waits).
    pub fn fd(&self) -> RawFd {
        self.fd.raw()
    }

    pub fn stats(&self) -> TapStats {
        self.stats
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// A locally administered unicast MAC from the FNV-1a hash of `name`.
pub(crate) fn mac_for_name(name: &str) -> EthernetAddress {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    EthernetAddress([0x02, b[1], b[2], b[3], b[4], b[5]])
}

impl Device for TapDevice {
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            mtu: MTU,
            max_burst: 64,
        }
    }

    fn counters(&self) -> DeviceCounters {
        self.stats.device_counters()
    }

    /// Reads frames until `max` or EAGAIN (one read() per frame).
    fn receive(&mut self, _now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        let mut got = 0;
        while got < max {
            let mut buf = std::mem::take(&mut self.spare);
            buf.clear();
            buf.reserve(RX_BUF);
            // SAFETY: `buf` has at least `capacity()` writable bytes at its
            // pointer; read() writes at most that many.
            let n = unsafe {
                libc::read(
                    self.fd.raw(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.capacity(),
                )
            };
            if n < 0 {
                self.spare = buf;
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => break,
                    _ => {
                        self.stats.rx_errors += 1;
                        break;
                    }
                }
            }
            let n = n as usize;
            // SAFETY: read() initialised the first `n` bytes (n <= capacity).
            unsafe { buf.set_len(n) };
            if n == 0 {
                self.spare = buf;
                break;
            }
            if n > MAX_FRAME {
                self.stats.rx_oversize += 1;
                self.spare = buf;
                continue;
            }
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += n as u64;
            batch.push_swap(&mut buf);
            self.spare = buf;
            got += 1;
        }
        got
    }

    /// Writes each frame; on EAGAIN the rest of the batch is dropped and
    /// counted.
    fn transmit(&mut self, _now: Instant, batch: &mut FrameBatch) -> usize {
        let mut accepted = 0;
        let total = batch.len();
        'frames: for (i, frame) in batch.iter().enumerate() {
            if frame.len() > MAX_FRAME {
                self.stats.tx_errors += 1;
                continue;
            }
            loop {
                // SAFETY: `frame` is a valid slice for the duration of the call.
                let n = unsafe {
                    libc::write(
                        self.fd.raw(),
                        frame.as_ptr() as *const libc::c_void,
                        frame.len(),
                    )
                };
                if n >= 0 {
                    accepted += 1;
                    self.stats.tx_frames += 1;
                    self.stats.tx_bytes += frame.len() as u64;
                    break;
                }
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => {
                        self.stats.tx_drops += (total - i) as u64;
                        break 'frames;
                    }
                    _ => {
                        self.stats.tx_errors += 1;
                        break;
                    }
                }
            }
        }
        batch.clear();
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_locally_administered_unicast_and_stable() {
        let a = mac_for_name("fl123t0");
        assert_eq!(a.0[0], 0x02);
        assert_eq!(a, mac_for_name("fl123t0"));
        assert_ne!(a, mac_for_name("fl123t1"));
    }

    #[test]
    fn bad_names_and_zero_queues_are_refused_before_any_syscall() {
        assert!(TapDevice::open("", 1).is_err());
        assert!(TapDevice::open("a-name-that-is-too-long", 1).is_err());
        assert!(TapDevice::open("a/b", 1).is_err());
        assert!(TapDevice::open("fl0", 0).is_err());
    }
}
