//! AF_XDP: one socket bound to one (interface, queue), with its own UMEM
//! and its four rings, driven without blocking.
//!
//! Layout: the UMEM is an anonymous mapping of `frames` chunks of
//! `frame_size` bytes (aligned mode). A free list holds the chunks we own;
//! the rest sit in the fill ring or rx ring (lent to the kernel for
//! receive) or in the tx/completion rings (lent for transmit).
//!
//! Receive: peek the rx ring (up to `max`), copy each frame into the batch,
//! release the descriptors, return their chunks (the descriptor address
//! includes the headroom offset, so it is masked to the chunk) and refill
//! the fill ring with what is free, partially if need be. The kernel is
//! kicked (`recvfrom`) only when the fill ring's NEED_WAKEUP flag says so.
//!
//! Transmit: reap the completion ring, reserve as many tx descriptors as
//! there are frames, free chunks and completion room (partial
//! reservations), copy, submit, and kick with `sendto(fd, NULL, 0,
//! MSG_DONTWAIT)`. In copy mode the kernel moves at most 32 frames per
//! `sendto` and answers EAGAIN while more are queued, so the kick loops
//! (bounded), reaping completions between tries. Frames that find no chunk
//! or descriptor are dropped and counted.
//!
//! The XDP program (see [`super::bpf`]) is shared by every queue of an
//! interface in this process: the first [`XdpDevice`] on an interface loads
//! and attaches it, later ones add their socket to its XSKMAP, and the last
//! one to close detaches it.

use core::net::Ipv4Addr;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::bpf::{raise_memlock, XdpLink, XdpProgram, XskMap};
use super::{annotate, check_ifname, errno_of, if_index, is_root, os_error, Fd};
use crate::phy::{Device, DeviceCapabilities, DeviceCounters, FrameBatch};
use crate::time::Instant;
use crate::wire::EthernetAddress;

pub use super::bpf::AttachMode;

// linux/socket.h, linux/if_xdp.h
const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_RING_NEED_WAKEUP: u32 = 1;
const XDP_PGOFF_RX_RING: libc::off_t = 0;
const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;
/// Headroom the kernel keeps before a received frame in copy mode.
const XDP_PACKET_HEADROOM: u32 = 256;
// asm-generic/socket.h
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
/// Slots in the per-interface XSKMAP: queues 0..1024.
const MAX_QUEUES: u32 = 1024;

#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// An rx/tx descriptor (`struct xdp_desc`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

/// The kernel's per-socket counters (`struct xdp_statistics`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpKernelStats {
    /// Frames dropped for reasons other than invalid descriptors.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// Settings for [`XdpDevice::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpOptions {
    /// How the XDP program is attached (generic by default: robust on veth).
    pub attach: AttachMode,
    /// Try a zero-copy bind first (only with native attach), falling back to
    /// copy mode when the driver says EOPNOTSUPP.
    pub zero_copy: bool,
    /// UMEM chunks.
    pub frames: u32,
    /// UMEM chunk size: 2048 or 4096.
    pub frame_size: u32,
    /// Entries in each of the four rings (a power of two).
    pub ring_size: u32,
    /// Bind with `XDP_USE_NEED_WAKEUP` and kick only when a ring asks.
    pub need_wakeup: bool,
    /// If non-zero: `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` (µs) and
    /// `SO_BUSY_POLL_BUDGET` on the socket.
    pub busy_poll_usecs: u32,
    pub busy_poll_budget: u32,
}

impl Default for XdpOptions {
    fn default() -> Self {
        XdpOptions {
            attach: AttachMode::Generic,
            zero_copy: true,
            frames: 4096,
            frame_size: 2048,
            ring_size: 2048,
            need_wakeup: true,
            busy_poll_usecs: 0,
            busy_poll_budget: 64,
        }
    }
}

/// Counters kept by the device (the kernel's are [`XdpKernelStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Rx descriptors pointing outside the UMEM or their chunk (dropped).
    pub rx_bad_descs: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames dropped for want of a free UMEM chunk or tx descriptor.
    pub tx_drops: u64,
    /// Frames larger than a chunk (or empty), dropped.
    pub tx_oversize: u64,
    /// `recvfrom` wake-ups (fill ring NEED_WAKEUP).
    pub rx_kicks: u64,
    /// `sendto` calls.
    pub tx_kicks: u64,
    /// `sendto` answered EAGAIN/EBUSY (more queued or busy) and was retried.
    pub tx_kick_retries: u64,
    /// `sendto` failed otherwise (ENETDOWN, ENXIO, ...), or the retry bound
    /// was hit with frames still queued.
    pub tx_kick_errors: u64,
}

impl XdpStats {
    /// The device-neutral view of these counters and the kernel's:
    /// receive drops are the kernel's `rx_dropped`, `rx_ring_full` and
    /// `rx_invalid_descs` plus the rx descriptors flowlane rejected; transmit
    /// drops are frames with no chunk or descriptor, oversize frames and the
    /// kernel's `tx_invalid_descs`.
    pub fn device_counters(&self, kernel: &XdpKernelStats) -> DeviceCounters {
        DeviceCounters {
            rx_frames: self.rx_frames,
            rx_bytes: self.rx_bytes,
            tx_frames: self.tx_frames,
            tx_bytes: self.tx_bytes,
            rx_dropped: kernel.rx_dropped
                + kernel.rx_ring_full
                + kernel.rx_invalid_descs
                + self.rx_bad_descs,
            rx_fill_ring_empty: kernel.rx_fill_ring_empty_descs,
            tx_dropped: self.tx_drops + self.tx_oversize + kernel.tx_invalid_descs,
            tx_kick_retries: self.tx_kick_retries,
            tx_kick_errors: self.tx_kick_errors,
        }
    }
}

/// One of the four shared rings: a mapping with producer and consumer
/// indexes, a flags word and `size` entries of `T`.
struct Ring<T> {
    area: *mut libc::c_void,
    area_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    size: u32,
    /// Our copy of the producer index (authoritative on rings we produce).
    cached_prod: u32,
    /// Our copy of the consumer index (authoritative on rings we consume).
    cached_cons: u32,
}

impl<T: Copy> Ring<T> {
    fn map(fd: RawFd, off: &RingOffset, size: u32, pgoff: libc::off_t) -> io::Result<Ring<T>> {
        let area_len = off.desc as usize + size as usize * core::mem::size_of::<T>();
        // SAFETY: a fresh shared mapping of the socket's ring at `pgoff`; the
        // kernel sized the ring for `size` entries after `desc`.
        let area = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                area_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(os_error("mmap AF_XDP ring"));
        }
        let base = area as *mut u8;
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS and lie inside the
        // mapping; the kernel aligns the u32 indexes and the descriptors.
        let mut ring = unsafe {
            Ring {
                area,
                area_len,
                producer: base.add(off.producer as usize) as *const AtomicU32,
                consumer: base.add(off.consumer as usize) as *const AtomicU32,
                flags: base.add(off.flags as usize) as *const AtomicU32,
                descs: base.add(off.desc as usize) as *mut T,
                size,
                cached_prod: 0,
                cached_cons: 0,
            }
        };
        ring.cached_prod = ring.producer().load(Ordering::Acquire);
        ring.cached_cons = ring.consumer().load(Ordering::Acquire);
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping, 4-byte aligned; the kernel
        // only accesses it atomically too.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`.
        let flags = unsafe { &*self.flags };
        flags.load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    /// Producer side: how many of `want` entries can be written now.
    fn reserve(&mut self, want: u32) -> u32 {
        let mut free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free < want {
            // Acquire: the kernel is done with the slots it consumed.
            self.cached_cons = self.consumer().load(Ordering::Acquire);
            free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        }
        free.min(want)
    }

    /// Producer side: writes entry `i` of the current reservation.
    fn put(&mut self, i: u32, value: T) {
        let idx = self.cached_prod.wrapping_add(i) & (self.size - 1);
        // SAFETY: idx < size, inside the mapped descriptor array; the slot
        // is free (reserved above), so the kernel is not reading it.
        unsafe { self.descs.add(idx as usize).write(value) };
    }

    /// Producer side: publishes `n` written entries.
    fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        // Release: the entries are written before the kernel sees the index.
        self.producer().store(self.cached_prod, Ordering::Release);
    }

    /// Consumer side: how many of `max` entries are ready.
    fn peek(&mut self, max: u32) -> u32 {
        let mut ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready < max {
            // Acquire: entries up to the new producer index are written.
            self.cached_prod = self.producer().load(Ordering::Acquire);
            ready = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        ready.min(max)
    }

    /// Consumer side: entry `i` of the ready ones.
    fn get(&self, i: u32) -> T {
        let idx = self.cached_cons.wrapping_add(i) & (self.size - 1);
        // SAFETY: idx < size; the entry is published (peeked) and not yet
        // released, so the kernel does not write it.
        unsafe { self.descs.add(idx as usize).read() }
    }

    /// Consumer side: hands `n` read entries back.
    fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        // Release: our reads of the entries happen before the kernel reuses
        // the slots.
        self.consumer().store(self.cached_cons, Ordering::Release);
    }

    /// Producer side: entries submitted that the kernel has not consumed.
    fn outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, once; no
        // references into it outlive the ring.
        unsafe { libc::munmap(self.area, self.area_len) };
    }
}

/// The packet buffer area.
struct Umem {
    area: *mut u8,
    len: usize,
}

impl Umem {
    fn new(len: usize) -> io::Result<Umem> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // affected.
        let area = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(os_error(format_args!("mmap UMEM ({len} bytes)")));
        }
        Ok(Umem {
            area: area as *mut u8,
            len,
        })
    }

    /// `len` bytes at `addr`, if inside the area.
    fn slice(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        if start.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked); the chunk is ours (taken from the rx
        // ring and not yet returned), so the kernel does not write it now.
        Some(unsafe { core::slice::from_raw_parts(self.area.add(start), len) })
    }

    fn slice_mut(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        if start.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked); the chunk came off our free list, so
        // neither the kernel nor another slice uses it.
        Some(unsafe { core::slice::from_raw_parts_mut(self.area.add(start), len) })
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly our mapping, once, after the socket that
        // registered it has closed (field order in XdpDevice).
        unsafe { libc::munmap(self.area as *mut libc::c_void, self.len) };
    }
}

/// A bound socket and its rings (rings unmapped before the fd closes).
struct XskSocket {
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<XdpDesc>,
    tx: Ring<XdpDesc>,
    fd: Fd,
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a live value of the type the option expects; its size
    // is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            v as *const T as *const libc::c_void,
            core::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn getsockopt<T: Default>(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    let mut v = T::default();
    let mut len = core::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is writable for `len` bytes; the kernel writes at most that.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut v as *mut T as *mut libc::c_void,
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

/// Creates a socket on `umem`, sets up its rings and binds it.
fn bind_socket(
    ifname: &str,
    ifindex: u32,
    queue: u32,
    umem: &Umem,
    opts: &XdpOptions,
    mode_flag: u16,
) -> io::Result<XskSocket> {
    // SAFETY: socket() has no memory preconditions.
    let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        let e = io::Error::last_os_error();
        let why = match e.raw_os_error() {
            Some(libc::EAFNOSUPPORT) => "AF_XDP socket: kernel without AF_XDP (CONFIG_XDP_SOCKETS)",
            Some(libc::EPERM) | Some(libc::EACCES) => {
                "AF_XDP socket: permission denied (needs root or CAP_NET_RAW)"
            }
            _ => "AF_XDP socket",
        };
        return Err(annotate(e, why));
    }
    let fd = Fd(raw);
    let reg = UmemReg {
        addr: umem.area as u64,
        len: umem.len as u64,
        chunk_size: opts.frame_size,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    setsockopt(fd.raw(), SOL_XDP, XDP_UMEM_REG, &reg).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::ENOMEM) | Some(libc::EPERM) | Some(libc::ENOBUFS) => format!(
                "register UMEM ({} bytes): locked memory limit (RLIMIT_MEMLOCK) too low or \
                 not root",
                umem.len
            ),
            _ => format!("register UMEM ({} bytes)", umem.len),
        };
        annotate(e, why)
    })?;
    for (opt, name) in [
        (XDP_UMEM_FILL_RING, "fill"),
        (XDP_UMEM_COMPLETION_RING, "completion"),
        (XDP_RX_RING, "rx"),
        (XDP_TX_RING, "tx"),
    ] {
        setsockopt(fd.raw(), SOL_XDP, opt, &opts.ring_size)
            .map_err(|e| annotate(e, format_args!("AF_XDP {name} ring of {}", opts.ring_size)))?;
    }
    let off: MmapOffsets = getsockopt(fd.raw(), SOL_XDP, XDP_MMAP_OFFSETS)
        .map_err(|e| annotate(e, "XDP_MMAP_OFFSETS"))?;
    let n = opts.ring_size;
    let fill = Ring::map(fd.raw(), &off.fr, n, XDP_UMEM_PGOFF_FILL_RING)?;
    let comp = Ring::map(fd.raw(), &off.cr, n, XDP_UMEM_PGOFF_COMPLETION_RING)?;
    let rx = Ring::map(fd.raw(), &off.rx, n, XDP_PGOFF_RX_RING)?;
    let tx = Ring::map(fd.raw(), &off.tx, n, XDP_PGOFF_TX_RING)?;
    let mut flags = mode_flag;
    if opts.need_wakeup {
        flags |= XDP_USE_NEED_WAKEUP;
    }
    let sa = SockaddrXdp {
        family: AF_XDP as u16,
        flags,
        ifindex,
        queue_id: queue,
        shared_umem_fd: 0,
    };
    // SAFETY: `sa` is a live sockaddr_xdp and its size is passed.
    let rc = unsafe {
        libc::bind(
            fd.raw(),
            &sa as *const SockaddrXdp as *const libc::sockaddr,
            core::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        let mode = if mode_flag == XDP_ZEROCOPY {
            "zero-copy"
        } else {
            "copy"
        };
        let hint = match e.raw_os_error() {
            Some(libc::EINVAL) => " (does the queue exist?)",
            Some(libc::EBUSY) => " (the queue already has an AF_XDP socket)",
            Some(libc::EOPNOTSUPP) => " (the driver does not support this mode)",
            _ => "",
        };
        return Err(annotate(
            e,
            format_args!("bind AF_XDP socket to {ifname} queue {queue} in {mode} mode{hint}"),
        ));
    }
    if opts.busy_poll_usecs > 0 {
        let one: libc::c_int = 1;
        let usecs = opts.busy_poll_usecs as libc::c_int;
        let budget = opts.busy_poll_budget as libc::c_int;
        for (opt, v, name) in [
            (SO_PREFER_BUSY_POLL, &one, "SO_PREFER_BUSY_POLL"),
            (SO_BUSY_POLL, &usecs, "SO_BUSY_POLL"),
            (SO_BUSY_POLL_BUDGET, &budget, "SO_BUSY_POLL_BUDGET"),
        ] {
            setsockopt(fd.raw(), libc::SOL_SOCKET, opt, v).map_err(|e| annotate(e, name))?;
        }
    }
    Ok(XskSocket {
        fill,
        comp,
        rx,
        tx,
        fd,
    })
}

/// The program, map and link of one interface, shared by its queues.
struct Attached {
    netns: u64,
    ifindex: u32,
    ip: Ipv4Addr,
    mode: AttachMode,
    // Drop order: detach, then unload, then the map.
    link: XdpLink,
    _prog: XdpProgram,
    map: XskMap,
}

static ATTACHED: Mutex<Vec<Weak<Attached>>> = Mutex::new(Vec::new());

/// The identity of the calling thread's network namespace.
fn netns_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// The program on `ifindex` (in this thread's namespace), loading and
/// attaching it if this process has none there yet.
fn attach_shared(
    ifname: &str,
    ifindex: u32,
    ip: Ipv4Addr,
    mode: AttachMode,
) -> io::Result<Arc<Attached>> {
    let netns = netns_id();
    let mut all = ATTACHED.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|w| w.strong_count() > 0);
    if let Some(a) = all
        .iter()
        .filter_map(Weak::upgrade)
        .find(|a| a.netns == netns && a.ifindex == ifindex)
    {
        if a.ip != ip || a.mode != mode {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{ifname} already carries flowlane's XDP program for {} in {} mode; \
                     every queue must use the same address and mode",
                    a.ip,
                    a.mode.name()
                ),
            ));
        }
        return Ok(a);
    }
    let map = XskMap::new(MAX_QUEUES).map_err(|e| annotate(e, ifname))?;
    let prog = XdpProgram::load_filter(&map, ip).map_err(|e| annotate(e, ifname))?;
    let link = XdpLink::attach(&prog, ifindex, mode).map_err(|e| annotate(e, ifname))?;
    let a = Arc::new(Attached {
        netns,
        ifindex,
        ip,
        mode,
        link,
        _prog: prog,
        map,
    });
    all.push(Arc::downgrade(&a));
    Ok(a)
}

/// `SIOCGIFHWADDR` / `SIOCGIFMTU` on `ifname` (this thread's namespace).
fn iface_info(ifname: &str) -> io::Result<(EthernetAddress, usize)> {
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        // sockaddr (family + 14 bytes) for the address, or an int for the MTU.
        data: [u8; 16],
        _pad: [u8; 8],
    }
    // SAFETY: socket() has no memory preconditions.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(os_error("socket for interface ioctls"));
    }
    let sock = Fd(raw);
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 16],
        _pad: [0; 8],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: SIOCGIFHWADDR fills a `struct ifreq` (40 bytes, as IfReq).
    if unsafe { libc::ioctl(sock.raw(), libc::SIOCGIFHWADDR, &mut req as *mut IfReq) } < 0 {
        return Err(os_error(format_args!("SIOCGIFHWADDR {ifname}")));
    }
    let mac = EthernetAddress::from_bytes(&req.data[2..8]);
    req.data = [0; 16];
    // SAFETY: SIOCGIFMTU fills the int at the start of the union.
    if unsafe { libc::ioctl(sock.raw(), libc::SIOCGIFMTU, &mut req as *mut IfReq) } < 0 {
        return Err(os_error(format_args!("SIOCGIFMTU {ifname}")));
    }
    let mtu = i32::from_ne_bytes([req.data[0], req.data[1], req.data[2], req.data[3]]);
    Ok((mac, mtu.max(0) as usize))
}

/// One AF_XDP socket on one (interface, queue).
pub struct XdpDevice {
    // Field order is drop order: leave the XSKMAP, close the socket (rings
    // unmapped first), free the UMEM, then release the shared program.
    socket: XskSocket,
    umem: Umem,
    attached: Arc<Attached>,
    ifname: String,
    ifindex: u32,
    queue: u32,
    ip: Ipv4Addr,
    mac: EthernetAddress,
    mtu: usize,
    zero_copy: bool,
    need_wakeup: bool,
    frame_size: u32,
    /// Chunk addresses we own.
    free: Vec<u64>,
    /// Chunks lent for receive (fill ring plus frames in flight to rx).
    in_fill: u32,
    fill_target: u32,
    /// Chunks lent for transmit (tx ring plus awaiting completion).
    tx_inflight: u32,
    tx_inflight_max: u32,
    stats: XdpStats,
}

// SAFETY: the raw pointers refer to mappings this value owns exclusively
// (UMEM and rings); nothing is tied to the creating thread, so the device
// may move to the core that polls it. It is not Sync: methods that touch
// the rings take `&mut self`.
unsafe impl Send for XdpDevice {}

impl core::fmt::Debug for XdpDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XdpDevice")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("ip", &self.ip)
            .field("mode", &self.mode())
            .field("attach", &self.attached.mode)
            .field("stats", &self.stats)
            .finish()
    }
}

impl XdpDevice {
    /// Opens an AF_XDP socket on `ifname` queue `queue` (in the calling
    /// thread's network namespace) for flowlane's address `ip`, and makes
    /// sure the interface carries the filter program that sends flowlane's
    /// frames to it.
    pub fn open(ifname: &str, queue: u32, ip: Ipv4Addr, opts: XdpOptions) -> io::Result<XdpDevice> {
        check_ifname(ifname)?;
        check_options(&opts)?;
        if queue >= MAX_QUEUES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("queue {queue} out of range (at most {})", MAX_QUEUES - 1),
            ));
        }
        let ifindex = if_index(ifname)?;
        if is_root() {
            raise_memlock();
        }
        let (mac, if_mtu) = iface_info(ifname)?;
        let attached = attach_shared(ifname, ifindex, ip, opts.attach)?;
        let umem = Umem::new(opts.frames as usize * opts.frame_size as usize)?;
        // Zero-copy needs the driver's own XDP path, so only with native
        // attach; fall back to copy mode when the driver refuses.
        let try_zc = opts.zero_copy && opts.attach == AttachMode::Native;
        let socket = if try_zc {
            match bind_socket(ifname, ifindex, queue, &umem, &opts, XDP_ZEROCOPY) {
                Ok(s) => s,
                Err(e) if errno_of(&e) == libc::EOPNOTSUPP || errno_of(&e) == libc::EINVAL => {
                    bind_socket(ifname, ifindex, queue, &umem, &opts, XDP_COPY)?
                }
                Err(e) => return Err(e),
            }
        } else {
            bind_socket(ifname, ifindex, queue, &umem, &opts, XDP_COPY)?
        };
        let options: u32 = getsockopt(socket.fd.raw(), SOL_XDP, XDP_OPTIONS)
            .map_err(|e| annotate(e, "XDP_OPTIONS"))?;
        let zero_copy = options & XDP_OPTIONS_ZEROCOPY != 0;
        let frame_size = opts.frame_size;
        let free: Vec<u64> = (0..opts.frames as u64)
            .rev()
            .map(|i| i * frame_size as u64)
            .collect();
        let fill_target = opts.ring_size.min(opts.frames / 2);
        let tx_inflight_max = opts.ring_size.min(opts.frames - fill_target);
        let chunk_mtu = (frame_size - XDP_PACKET_HEADROOM) as usize - 14;
        let mut dev = XdpDevice {
            socket,
            umem,
            attached,
            ifname: ifname.to_string(),
            ifindex,
            queue,
            ip,
            mac,
            mtu: if_mtu.min(chunk_mtu),
            zero_copy,
            need_wakeup: opts.need_wakeup,
            frame_size,
            free,
            in_fill: 0,
            fill_target,
            tx_inflight: 0,
            tx_inflight_max,
            stats: XdpStats::default(),
        };
        dev.refill();
        dev.attached
            .map
            .set(queue, dev.socket.fd.raw())
            .map_err(|e| annotate(e, ifname))?;
        Ok(dev)
    }

    /// "zero-copy" or "copy": the bind mode in use.
    pub fn mode(&self) -> &'static str {
        if self.zero_copy {
            "zero-copy"
        } else {
            "copy"
        }
    }

    /// How the XDP program is attached to the interface.
    pub fn attach_mode(&self) -> AttachMode {
        self.attached.mode
    }

    /// The interface's MAC address: flowlane shares it with the kernel (the
    /// XDP program splits traffic by IPv4 address, not by MAC).
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The IPv4 address whose traffic the program redirects here.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The socket, for poll/epoll (POLLIN when the rx ring has frames).
    pub fn fd(&self) -> RawFd {
        self.socket.fd.raw()
    }

    pub fn stats(&self) -> XdpStats {
        self.stats
    }

    /// UMEM chunks neither lent for receive nor for transmit.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// The kernel's counters for this socket (`XDP_STATISTICS`).
    pub fn kernel_stats(&self) -> io::Result<XdpKernelStats> {
        getsockopt(self.socket.fd.raw(), SOL_XDP, XDP_STATISTICS)
            .map_err(|e| annotate(e, "XDP_STATISTICS"))
    }

    /// Lends free chunks to the fill ring, up to the target (partially if
    /// the ring or the free list is short).
    fn refill(&mut self) {
        let want = self
            .fill_target
            .saturating_sub(self.in_fill)
            .min(self.free.len() as u32);
        if want == 0 {
            return;
        }
        let n = self.socket.fill.reserve(want);
        for i in 0..n {
            let addr = self.free.pop().expect("n <= free.len()");
            self.socket.fill.put(i, addr);
        }
        self.socket.fill.submit(n);
        self.in_fill += n;
    }

    /// Takes finished transmissions back from the completion ring.
    fn reap_completions(&mut self) {
        let n = self.socket.comp.peek(self.socket.comp.size);
        if n == 0 {
            return;
        }
        let mask = !(self.frame_size as u64 - 1);
        for i in 0..n {
            let addr = self.socket.comp.get(i);
            self.free.push(addr & mask);
        }
        self.socket.comp.release(n);
        self.tx_inflight = self.tx_inflight.saturating_sub(n);
    }

    /// Wakes the kernel to receive (only when the fill ring asks for it).
    fn kick_rx(&mut self) {
        self.stats.rx_kicks += 1;
        // SAFETY: a zero-length recvfrom with null buffers and address is
        // valid; it only wakes the driver.
        unsafe {
            libc::recvfrom(
                self.socket.fd.raw(),
                core::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
            )
        };
    }

    /// Makes the kernel send what the tx ring holds. In copy mode each
    /// `sendto` moves at most 32 frames and says EAGAIN while more are
    /// queued; loop (bounded), reaping completions so the kernel has room.
    fn kick_tx(&mut self) {
        if self.zero_copy && self.need_wakeup && !self.socket.tx.needs_wakeup() {
            return;
        }
        let mut budget = self.socket.tx.outstanding() / 32 + 8;
        loop {
            self.stats.tx_kicks += 1;
            // SAFETY: a zero-length sendto with null buffer and address is
            // valid for AF_XDP; it only starts transmission of the tx ring.
            let rc = unsafe {
                libc::sendto(
                    self.socket.fd.raw(),
                    core::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    core::ptr::null(),
                    0,
                )
            };
            if rc >= 0 {
                if self.socket.tx.outstanding() == 0 || self.zero_copy {
                    return;
                }
            } else {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                        self.stats.tx_kick_retries += 1;
                    }
                    _ => {
                        self.stats.tx_kick_errors += 1;
                        return;
                    }
                }
            }
            self.reap_completions();
            if self.socket.tx.outstanding() == 0 {
                return;
            }
            budget -= 1;
            if budget == 0 {
                self.stats.tx_kick_errors += 1;
                return;
            }
        }
    }
}

fn check_options(o: &XdpOptions) -> io::Result<()> {
    let bad = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    if o.frame_size != 2048 && o.frame_size != 4096 {
        return bad(format!("XDP frame_size {} (2048 or 4096)", o.frame_size));
    }
    if !o.ring_size.is_power_of_two() || o.ring_size < 64 {
        return bad(format!(
            "XDP ring_size {} (a power of two, at least 64)",
            o.ring_size
        ));
    }
    if o.frames < 128 || o.frames > (1 << 20) {
        return bad(format!("XDP frames {} (128 ..= 1048576)", o.frames));
    }
    Ok(())
}

impl AsRawFd for XdpDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.fd.raw()
    }
}

impl Drop for XdpDevice {
    fn drop(&mut self) {
        // The kernel also removes a closing socket from its maps; doing it
        // first stops redirects to a socket that is going away.
        let _ = self.attached.map.remove(self.queue);
        debug_assert_eq!(self.attached.link.ifindex(), self.ifindex);
    }
}

impl Device for XdpDevice {
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            mtu: self.mtu,
            max_burst: 64,
        }
    }

    /// One `getsockopt(XDP_STATISTICS)` per call (the runtime calls it once
    /// per `stats_interval`, never per packet); if that fails, the kernel's
    /// share counts as zero.
    fn counters(&self) -> DeviceCounters {
        let kernel = self.kernel_stats().unwrap_or_default();
        self.stats.device_counters(&kernel)
    }

    fn receive(&mut self, _now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        let n = self.socket.rx.peek(max.min(u32::MAX as usize) as u32);
        let mask = !(self.frame_size as u64 - 1);
        let mut got = 0;
        for i in 0..n {
            let d = self.socket.rx.get(i);
            let chunk = d.addr & mask;
            let len = d.len as usize;
            let in_chunk = (d.addr - chunk) as usize + len <= self.frame_size as usize;
            match self.umem.slice(d.addr, len).filter(|_| in_chunk) {
                Some(frame) => {
                    batch.push_copy(frame);
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += len as u64;
                    got += 1;
                }
                None => self.stats.rx_bad_descs += 1,
            }
            if (chunk as usize) < self.umem.len {
                self.free.push(chunk);
            }
        }
        if n > 0 {
            self.socket.rx.release(n);
            self.in_fill = self.in_fill.saturating_sub(n);
        }
        self.reap_completions();
        self.refill();
        if self.need_wakeup && self.socket.fill.needs_wakeup() {
            self.kick_rx();
        }
        if self.tx_inflight > 0 && self.socket.tx.outstanding() > 0 {
            self.kick_tx();
        }
        got
    }

    fn transmit(&mut self, _now: Instant, batch: &mut FrameBatch) -> usize {
        self.reap_completions();
        let total = batch.len();
        let room = (self.tx_inflight_max - self.tx_inflight).min(self.free.len() as u32);
        let n = self
            .socket
            .tx
            .reserve((total.min(u32::MAX as usize) as u32).min(room));
        let mut used = 0u32;
        let mut oversize = 0usize;
        for frame in batch.iter() {
            if used == n {
                break;
            }
            if frame.is_empty() || frame.len() > self.frame_size as usize {
                oversize += 1;
                continue;
            }
            let addr = self.free.pop().expect("n <= free.len()");
            self.umem
                .slice_mut(addr, frame.len())
                .expect("free chunks lie inside the UMEM")
                .copy_from_slice(frame);
            self.socket.tx.put(
                used,
                XdpDesc {
                    addr,
                    len: frame.len() as u32,
                    options: 0,
                },
            );
            used += 1;
            self.stats.tx_bytes += frame.len() as u64;
        }
        self.socket.tx.submit(used);
        self.tx_inflight += used;
        self.stats.tx_frames += used as u64;
        self.stats.tx_oversize += oversize as u64;
        self.stats.tx_drops += (total - used as usize - oversize) as u64;
        batch.clear();
        if used > 0 || self.socket.tx.outstanding() > 0 {
            self.kick_tx();
        }
        used as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_struct_sizes() {
        assert_eq!(core::mem::size_of::<UmemReg>(), 32);
        assert_eq!(core::mem::size_of::<MmapOffsets>(), 128);
        assert_eq!(core::mem::size_of::<SockaddrXdp>(), 16);
        assert_eq!(core::mem::size_of::<XdpDesc>(), 16);
        assert_eq!(core::mem::size_of::<XdpKernelStats>(), 48);
    }

    #[test]
    fn device_counters_combine_ours_and_the_kernels() {
        let ours = XdpStats {
            rx_frames: 10,
            rx_bytes: 1000,
            rx_bad_descs: 1,
            tx_frames: 20,
            tx_bytes: 2000,
            tx_drops: 2,
            tx_oversize: 3,
            rx_kicks: 4,
            tx_kicks: 5,
            tx_kick_retries: 6,
            tx_kick_errors: 7,
        };
        let kernel = XdpKernelStats {
            rx_dropped: 100,
            rx_invalid_descs: 200,
            tx_invalid_descs: 300,
            rx_ring_full: 400,
            rx_fill_ring_empty_descs: 500,
            tx_ring_empty_descs: 600,
        };
        assert_eq!(
            ours.device_counters(&kernel),
            DeviceCounters {
                rx_frames: 10,
                rx_bytes: 1000,
                tx_frames: 20,
                tx_bytes: 2000,
                rx_dropped: 100 + 400 + 200 + 1,
                rx_fill_ring_empty: 500,
                tx_dropped: 2 + 3 + 300,
                tx_kick_retries: 6,
                tx_kick_errors: 7,
            }
        );
    }

    #[test]
    fn options_are_checked() {
        assert!(check_options(&XdpOptions::default()).is_ok());
        let o = XdpOptions {
            frame_size: 3000,
            ..XdpOptions::default()
        };
        assert!(check_options(&o).is_err());
        let o = XdpOptions {
            ring_size: 1000,
            ..XdpOptions::default()
        };
        assert!(check_options(&o).is_err());
    }

    #[test]
    fn missing_interface_is_named_in_the_error() {
        let e = XdpDevice::open(
            "flnonexist0",
            0,
            Ipv4Addr::new(10, 77, 0, 2),
            XdpOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("flnonexist0"), "{e}");
    }
}
