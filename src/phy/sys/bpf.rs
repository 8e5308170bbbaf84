//! The XDP program that splits a NIC queue between flowlane and the kernel,
//! and its loader over the raw `bpf(2)` syscall (no BPF toolchain, no ELF).
//!
//! The program sends to the queue's AF_XDP socket exactly:
//! - ARP frames (ethertype 0x0806) whose *target protocol address* is
//!   flowlane's IPv4 address: requests for it and replies to its own
//!   requests (both carry flowlane's address as the target);
//! - IPv4 frames (0x0800) whose destination address is flowlane's address;
//!
//! and returns `XDP_PASS` for everything else, so the host keeps its own
//! traffic (SSH, its own ARP, other addresses) on the same interface. If
//! the queue has no socket in the map, `bpf_redirect_map`'s fallback action
//! is `XDP_PASS` too.
//!
//! Objects: an XSKMAP ([`XskMap`], key = queue id, value = AF_XDP socket fd),
//! the program ([`XdpProgram`], flowlane's address is an immediate), and a
//! BPF link ([`XdpLink`]) attaching it to the interface. A link detaches by
//! itself when its last descriptor closes, including when the process
//! crashes, so nothing is left attached.

use core::net::Ipv4Addr;
use std::io;
use std::os::fd::RawFd;

use super::{annotate, Fd};

// bpf(2) commands (linux/bpf.h, enum bpf_cmd).
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_PROG_LOAD: u32 = 5;
const BPF_LINK_CREATE: u32 = 28;

/// `BPF_MAP_TYPE_XSKMAP`.
const MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP`.
const PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP` attach type (for links and `expected_attach_type`).
const ATTACH_TYPE_XDP: u32 = 37;
/// `BPF_PSEUDO_MAP_FD`: an `ld_imm64` whose immediate is a map fd.
const PSEUDO_MAP_FD: u8 = 1;
/// `BPF_FUNC_redirect_map`.
const FUNC_REDIRECT_MAP: i32 = 51;
/// `XDP_PASS` (enum xdp_action).
const XDP_PASS: i32 = 2;

/// How the program is attached to the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// Generic (SKB) XDP, `XDP_FLAGS_SKB_MODE`: works on every interface;
    /// the robust choice for veth (see AFXDP.md).
    Generic,
    /// Native (driver) XDP, `XDP_FLAGS_DRV_MODE`: faster where the driver
    /// supports it; needed for zero-copy.
    Native,
}

impl AttachMode {
    /// The `XDP_FLAGS_*` value for the link.
    pub fn flags(self) -> u32 {
        match self {
            AttachMode::Generic => 1 << 1,
            AttachMode::Native => 1 << 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Generic => "generic",
            AttachMode::Native => "native",
        }
    }
}

/// One eBPF instruction (`struct bpf_insn`): opcode, dst (low nibble) and
/// src (high nibble) registers, offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}
/// `dst = *(u32 *)(src + off)` (BPF_LDX | BPF_MEM | BPF_W).
const fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x61, dst, src, off, 0)
}
/// `dst = *(u16 *)(src + off)` (BPF_LDX | BPF_MEM | BPF_H).
const fn ldx_h(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x69, dst, src, off, 0)
}
/// `dst = src` (BPF_ALU64 | BPF_MOV | BPF_X).
const fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}
/// `dst = imm` (BPF_ALU64 | BPF_MOV | BPF_K).
const fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}
/// `dst += imm` (BPF_ALU64 | BPF_ADD | BPF_K).
const fn add_imm(dst: u8, imm: i32) -> Insn {
    insn(0x07, dst, 0, 0, imm)
}
/// `if dst > src goto +off` (BPF_JMP | BPF_JGT | BPF_X, unsigned).
const fn jgt_reg(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x2d, dst, src, off, 0)
}
/// `if wdst == imm goto +off` (BPF_JMP32 | BPF_JEQ | BPF_K: 32-bit compare).
const fn jeq32_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x16, dst, 0, off, imm)
}
/// `if wdst != imm goto +off` (BPF_JMP32 | BPF_JNE | BPF_K: 32-bit compare,
/// so an immediate with the top bit set is not sign-extended into a
/// mismatch).
const fn jne32_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x56, dst, 0, off, imm)
}
/// `goto +off` (BPF_JMP | BPF_JA).
const fn ja(off: i16) -> Insn {
    insn(0x05, 0, 0, off, 0)
}
/// `call helper` (BPF_JMP | BPF_CALL).
const fn call(helper: i32) -> Insn {
    insn(0x85, 0, 0, 0, helper)
}
/// `exit` (BPF_JMP | BPF_EXIT).
const fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0)
}
/// First half of `dst = map_by_fd(fd)` (BPF_LD | BPF_IMM | BPF_DW with
/// src = BPF_PSEUDO_MAP_FD); the second half is [`ld_imm64_hi`].
const fn ld_map_fd(dst: u8, fd: i32) -> Insn {
    insn(0x18, dst, PSEUDO_MAP_FD, 0, fd)
}
/// Second half of a 64-bit immediate load: the upper 32 bits (0).
const fn ld_imm64_hi() -> Insn {
    insn(0, 0, 0, 0, 0)
}
/// Jump offset from the instruction at `from` to the one at `to` (offsets
/// count from the next instruction).
const fn to(from: usize, to: usize) -> i16 {
    (to as isize - from as isize - 1) as i16
}

// Instruction indexes of the jump targets below.
const L_IPV4: usize = 14;
const L_REDIRECT: usize = 16;
const L_PASS: usize = 22;

/// The filter program for flowlane's `ip` and the XSKMAP `map_fd`.
///
/// Packet bytes are read in network order into little-endian loads, so the
/// constants compared against are byte-swapped: ethertype 0x0800 reads as
/// 0x0008, and the address is compared as the u32 its octets form in
/// memory. Every packet read is preceded by a `data + N > data_end` check,
/// as the verifier requires.
pub fn filter_program(map_fd: RawFd, ip: Ipv4Addr) -> Vec<Insn> {
    let ip_imm = i32::from_ne_bytes(ip.octets());
    let p = vec![
        ldx_w(R2, R1, 0),                      //  0: r2 = ctx->data
        ldx_w(R3, R1, 4),                      //  1: r3 = ctx->data_end
        mov_reg(R4, R2),                       //  2: r4 = r2
        add_imm(R4, 34),                       //  3: r4 += 34 (Ethernet 14 + IPv4 20)
        jgt_reg(R4, R3, to(4, L_PASS)),        //  4: if r4 > r3 goto pass
        ldx_h(R5, R2, 12),                     //  5: r5 = *(u16 *)(r2 + 12) ethertype
        jeq32_imm(R5, 0x0008, to(6, L_IPV4)),  //  6: if w5 == 0x0800 (BE) goto ipv4
        jne32_imm(R5, 0x0608, to(7, L_PASS)),  //  7: if w5 != 0x0806 (BE) goto pass
        mov_reg(R4, R2),                       //  8: r4 = r2
        add_imm(R4, 42),                       //  9: r4 += 42 (Ethernet 14 + ARP 28)
        jgt_reg(R4, R3, to(10, L_PASS)),       // 10: if r4 > r3 goto pass
        ldx_w(R5, R2, 38),                     // 11: r5 = *(u32 *)(r2 + 38) ARP target IP
        jne32_imm(R5, ip_imm, to(12, L_PASS)), // 12: if w5 != ip goto pass
        ja(to(13, L_REDIRECT)),                // 13: goto redirect
        ldx_w(R5, R2, 30),                     // 14: ipv4: r5 = *(u32 *)(r2 + 30) dst IP
        jne32_imm(R5, ip_imm, to(15, L_PASS)), // 15: if w5 != ip goto pass
        ldx_w(R2, R1, 16),                     // 16: redirect: r2 = ctx->rx_queue_index
        ld_map_fd(R1, map_fd),                 // 17: r1 = xskmap (ld_imm64, pseudo map fd)
        ld_imm64_hi(),                         // 18:   (upper half of the 64-bit immediate)
        mov_imm(R3, XDP_PASS),                 // 19: r3 = XDP_PASS (action if the slot is empty)
        call(FUNC_REDIRECT_MAP),               // 20: r0 = bpf_redirect_map(r1, r2, r3)
        exit(),                                // 21: return r0
        mov_imm(R0, XDP_PASS),                 // 22: pass: r0 = XDP_PASS
        exit(),                                // 23: return r0
    ];
    debug_assert_eq!(p.len(), L_PASS + 2);
    p
}

/// `bpf(cmd, attr, sizeof attr)`.
fn sys_bpf<T>(cmd: u32, attr: &mut T) -> io::Result<libc::c_int> {
    // SAFETY: `attr` is a live, #[repr(C)] prefix of `union bpf_attr` for
    // `cmd` with every unused byte zero, and its size is passed, so the
    // kernel reads (and for some commands writes) only within it. Pointers
    // inside it point to buffers the caller keeps alive across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T as *mut libc::c_void,
            core::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as libc::c_int)
    }
}

fn bpf_error(e: io::Error, what: &str) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (needs root or CAP_BPF + CAP_NET_ADMIN; with older kernels also a high \
             RLIMIT_MEMLOCK)"
        }
        Some(libc::ENOSYS) => " (kernel without bpf(2))",
        _ => "",
    };
    annotate(e, format_args!("{what}{hint}"))
}

/// `name` as a BPF object name: at most 15 bytes, NUL-padded.
fn obj_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// An XSKMAP: queue id -> AF_XDP socket.
#[derive(Debug)]
pub struct XskMap {
    fd: Fd,
    max_entries: u32,
}

#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl XskMap {
    /// A map for queues `0..max_entries`.
    pub fn new(max_entries: u32) -> io::Result<XskMap> {
        let mut attr = MapCreateAttr {
            map_type: MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries,
            map_flags: 0,
            inner_map_fd: 0,
            numa_node: 0,
            map_name: obj_name("flowlane_xsks"),
        };
        let fd = sys_bpf(BPF_MAP_CREATE, &mut attr)
            .map_err(|e| bpf_error(e, "BPF_MAP_CREATE (XSKMAP)"))?;
        Ok(XskMap {
            fd: Fd(fd),
            max_entries,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.raw()
    }

    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Points `queue` at the AF_XDP socket `xsk_fd` (which must be bound to
    /// that queue of the interface the program runs on).
    pub fn set(&self, queue: u32, xsk_fd: RawFd) -> io::Result<()> {
        let key = queue;
        let value = xsk_fd as u32;
        let mut attr = MapElemAttr {
            map_fd: self.fd.raw() as u32,
            _pad: 0,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            flags: 0, // BPF_ANY
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(drop)
            .map_err(|e| bpf_error(e, &format!("BPF_MAP_UPDATE_ELEM (queue {queue})")))
    }

    /// Empties `queue`'s slot (its frames then go to the kernel).
    pub fn remove(&self, queue: u32) -> io::Result<()> {
        let key = queue;
        let mut attr = MapElemAttr {
            map_fd: self.fd.raw() as u32,
            _pad: 0,
            key: &key as *const u32 as u64,
            value: 0,
            flags: 0,
        };
        sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr)
            .map(drop)
            .map_err(|e| bpf_error(e, &format!("BPF_MAP_DELETE_ELEM (queue {queue})")))
    }
}

#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// A loaded (not yet attached) XDP program.
#[derive(Debug)]
pub struct XdpProgram {
    fd: Fd,
}

impl XdpProgram {
    /// Loads `insns` as an XDP program. If the verifier rejects it, the
    /// load is repeated with the verifier log on, and the error carries the
    /// log's lines.
    pub fn load(insns: &[Insn]) -> io::Result<XdpProgram> {
        match Self::load_with_log(insns, None) {
            Ok(p) => Ok(p),
            Err(_) => {
                let mut log = vec![0u8; 1 << 16];
                match Self::load_with_log(insns, Some(&mut log)) {
                    Ok(p) => Ok(p),
                    Err(e) => {
                        let len = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                        let text = String::from_utf8_lossy(&log[..len]);
                        let lines: Vec<&str> = text
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .collect();
                        if lines.is_empty() {
                            // No log: refused before verification (EPERM...).
                            return Err(bpf_error(e, "BPF_PROG_LOAD (XDP)"));
                        }
                        let shown = lines[lines.len().saturating_sub(12)..].join(" | ");
                        Err(annotate(
                            e,
                            format_args!("XDP program rejected by the verifier; log: {shown}"),
                        ))
                    }
                }
            }
        }
    }

    /// flowlane's filter for `ip`, redirecting to `map`.
    pub fn load_filter(map: &XskMap, ip: Ipv4Addr) -> io::Result<XdpProgram> {
        Self::load(&filter_program(map.fd(), ip))
    }

    fn load_with_log(insns: &[Insn], log: Option<&mut Vec<u8>>) -> io::Result<XdpProgram> {
        // The crate's own license; the program uses no GPL-only helper.
        let license = c"MIT OR Apache-2.0";
        let (log_level, log_size, log_buf) = match log {
            Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
            None => (0, 0, 0),
        };
        let mut attr = ProgLoadAttr {
            prog_type: PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level,
            log_size,
            log_buf,
            kern_version: 0,
            prog_flags: 0,
            prog_name: obj_name("flowlane_xdp"),
            prog_ifindex: 0,
            expected_attach_type: ATTACH_TYPE_XDP,
        };
        let fd = sys_bpf(BPF_PROG_LOAD, &mut attr)?;
        Ok(XdpProgram { fd: Fd(fd) })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.raw()
    }
}

#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// An XDP program attached to an interface through a BPF link; detached
/// when dropped (or when the process exits).
#[derive(Debug)]
pub struct XdpLink {
    fd: Fd,
    ifindex: u32,
    mode: AttachMode,
}

impl XdpLink {
    /// Attaches `prog` to interface `ifindex` (in the calling thread's
    /// network namespace).
    pub fn attach(prog: &XdpProgram, ifindex: u32, mode: AttachMode) -> io::Result<XdpLink> {
        let mut attr = LinkCreateAttr {
            prog_fd: prog.fd() as u32,
            target_ifindex: ifindex,
            attach_type: ATTACH_TYPE_XDP,
            flags: mode.flags(),
        };
        let fd = sys_bpf(BPF_LINK_CREATE, &mut attr).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::EBUSY) | Some(libc::EEXIST) => format!(
                    "attach XDP ({} mode) to ifindex {ifindex}: another XDP program is \
                     already attached",
                    mode.name()
                ),
                Some(libc::EOPNOTSUPP) => format!(
                    "attach XDP ({} mode) to ifindex {ifindex}: the driver does not support \
                     this mode (try generic)",
                    mode.name()
                ),
                Some(libc::EINVAL) => format!(
                    "attach XDP ({} mode) to ifindex {ifindex} (kernel older than 5.9 has no \
                     XDP links)",
                    mode.name()
                ),
                _ => format!("attach XDP ({} mode) to ifindex {ifindex}", mode.name()),
            };
            bpf_error(e, &why)
        })?;
        Ok(XdpLink {
            fd: Fd(fd),
            ifindex,
            mode,
        })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    pub fn fd(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Raises RLIMIT_MEMLOCK to infinity when running as root (kernels before
/// 5.11 charge BPF maps and all kernels may charge the UMEM against it);
/// returns whether it is now unlimited.
pub fn raise_memlock() -> bool {
    let inf = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads one valid rlimit struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows every jump and checks it lands on an instruction, and that the
    /// three labels are where the comments say.
    #[test]
    fn jumps_land_on_their_labels() {
        let p = filter_program(7, Ipv4Addr::new(10, 77, 1, 2));
        assert_eq!(p.len(), 24);
        let target = |i: usize| (i as isize + 1 + p[i].off as isize) as usize;
        assert_eq!(target(4), L_PASS);
        assert_eq!(target(6), L_IPV4);
        assert_eq!(target(7), L_PASS);
        assert_eq!(target(10), L_PASS);
        assert_eq!(target(12), L_PASS);
        assert_eq!(target(13), L_REDIRECT);
        assert_eq!(target(15), L_PASS);
        // The map load carries the fd and the pseudo-map-fd source register.
        assert_eq!(p[17].code, 0x18);
        assert_eq!(p[17].imm, 7);
        assert_eq!(p[17].regs, (PSEUDO_MAP_FD << 4) | R1);
        // The address as it sits in memory, compared 32-bit.
        assert_eq!(p[12].imm.to_ne_bytes(), [10, 77, 1, 2]);
        assert_eq!(p[15].imm, p[12].imm);
        assert_eq!(core::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn attr_layouts_match_the_kernel_abi() {
        assert_eq!(core::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(core::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(core::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(core::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(
            core::mem::offset_of!(ProgLoadAttr, expected_attach_type),
            68
        );
        assert_eq!(core::mem::size_of::<LinkCreateAttr>(), 16);
    }
}
