//! Guards for throwaway network topologies: a network namespace ([`NetNs`])
//! and a veth pair ([`VethPair`]) whose ends sit in namespaces with
//! addresses in 10.77.0.0/16. Both remove what they made when dropped (also
//! when a test fails and unwinds), and their names are unique per process and
//! instance (prefix `fl`, then the pid and a counter), so parallel tests and
//! parallel test binaries do not collide.
//!
//! Configuration shells out to `ip` (iproute2); the one ethtool setting
//! needed (TX checksum offload off on the kernel peer, see AFXDP.md) is made
//! with the `SIOCETHTOOL` ioctl so no `ethtool` binary is needed. Code that
//! must run *inside* a namespace (a kernel socket as a test peer, opening an
//! AF_XDP socket on an interface there) uses [`NetNs::run`], which runs a
//! closure on a thread that has entered the namespace. [`NetNs::ping`] is a
//! small ICMP echo client for the kernel side, so tests need no `ping`
//! binary.
//!
//! Every error is one line naming the cause (not root, `ip` missing, the
//! command that failed and what it printed).

use core::net::Ipv4Addr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{annotate, is_root, os_error, Fd};
use crate::wire::{Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh name `fl<pid hex><kind><counter hex>`, at most 15 bytes (an
/// interface name's limit), unique within this process and, through the
/// pid, among processes running at the same time.
pub fn unique_name(kind: char) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("fl{:x}{}{:x}", std::process::id(), kind, n & 0xffff);
    debug_assert!(name.len() <= 14, "{name}");
    name
}

/// A third octet for a fresh 10.77.x.0/24, from the pid and the instance
/// counter (1..=250): distinct for the first 250 calls in a process.
pub fn unique_subnet() -> u8 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    ((std::process::id().wrapping_mul(31).wrapping_add(n)) % 250 + 1) as u8
}

/// `Ok` when running as root; otherwise an error naming what needed it.
pub fn require_root(what: &str) -> io::Result<()> {
    if is_root() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{what} needs root (CAP_NET_ADMIN); running as a normal user"),
        ))
    }
}

/// Runs `program args` and returns its stdout; a non-zero exit becomes an
/// error with the command line and the first line of its stderr.
fn run_cmd(program: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                let hint = if program == "ip" {
                    " (install iproute2)"
                } else {
                    ""
                };
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("`{program}` not found{hint}"),
                )
            } else {
                annotate(e, format_args!("cannot run `{program}`"))
            }
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        return Err(io::Error::other(format!(
            "`{program} {}` failed ({}): {first}",
            args.join(" "),
            out.status
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip args` in the calling process's namespace; returns its stdout.
pub fn ip(args: &[&str]) -> io::Result<String> {
    run_cmd("ip", args)
}

/// A network namespace, deleted (with every interface in it) on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace with a unique `fl...` name and brings its
    /// loopback up.
    pub fn new() -> io::Result<NetNs> {
        require_root("creating a network namespace")?;
        let name = unique_name('n');
        ip(&["netns", "add", &name])?;
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> args` (an `ip` command inside the namespace).
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `program args` inside the namespace (`ip netns exec`) and waits;
    /// a non-zero exit is an error carrying its stderr's first line.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        let out =
            self.command(program).args(args).output().map_err(|e| {
                annotate(e, format_args!("cannot run `ip netns exec {}`", self.name))
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(io::Error::other(format!(
                "`{program} {}` in namespace {} failed ({}): {}",
                args.join(" "),
                self.name,
                out.status,
                stderr.lines().next().unwrap_or("").trim()
            )));
        }
        Ok(out)
    }

    /// A `Command` that runs `program` inside the namespace, for callers
    /// that want to spawn it in the background and add arguments.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program])
            .stdin(Stdio::null());
        c
    }

    /// Runs `f` on a new thread that has entered this namespace and returns
    /// its result. Sockets made inside `f` belong to the namespace for their
    /// whole life, so they can be returned and used from any thread. A panic
    /// in `f` is propagated.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|e| annotate(e, format_args!("open {path}")))?;
        let name = &self.name;
        std::thread::scope(|s| {
            let handle = s.spawn(|| -> io::Result<R> {
                // SAFETY: setns on a descriptor we hold open, affecting only
                // this short-lived thread (CLONE_NEWNET may be entered by
                // one thread of a multithreaded process).
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(os_error(format_args!("setns into {name}")));
                }
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Sends `count` ICMP echo requests (56 data bytes, one at a time) from
    /// inside the namespace to `dst`, waiting up to `timeout` for each reply;
    /// returns how many replies came back. A raw socket, so no `ping`
    /// binary is needed (this helper reads the wall clock: it is test and
    /// demo tooling, not part of the stack).
    pub fn ping(&self, dst: Ipv4Addr, count: u16, timeout: Duration) -> io::Result<u16> {
        self.run(|| ping_here(dst, count, timeout))?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// ICMP echo from the calling thread's namespace (see [`NetNs::ping`]).
fn ping_here(dst: Ipv4Addr, count: u16, timeout: Duration) -> io::Result<u16> {
    // SAFETY: socket() has no memory preconditions.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if raw < 0 {
        return Err(os_error("ping: raw ICMP socket (needs root)"));
    }
    let fd = Fd(raw);
    let ident = (std::process::id() as u16) ^ (COUNTER.fetch_add(1, Ordering::Relaxed) as u16);
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    let payload: Vec<u8> = (0..56u8).collect();
    let mut replies = 0;
    for seq in 1..=count {
        let repr = Icmpv4Repr::EchoRequest {
            ident,
            seq_no: seq,
            data: &payload,
        };
        let mut msg = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut msg[..]));
        // SAFETY: `msg` and `addr` are valid for the call; the length passed
        // is `addr`'s size.
        let rc = unsafe {
            libc::sendto(
                fd.raw(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &addr as *const libc::sockaddr_in as *const libc::sockaddr,
                core::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(os_error(format_args!("ping {dst}: sendto")));
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: fd.raw(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n <= 0 {
                continue;
            }
            // SAFETY: `buf` is writable for its whole length.
            let got = unsafe {
                libc::recv(
                    fd.raw(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if got <= 0 {
                continue;
            }
            if is_reply(&buf[..got as usize], dst, ident, seq) {
                replies += 1;
                break;
            }
        }
    }
    Ok(replies)
}

/// True if `packet` (an IPv4 datagram as a raw socket returns it) is the
/// echo reply from `src` with this ident and sequence number.
fn is_reply(packet: &[u8], src: Ipv4Addr, ident: u16, seq: u16) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return false;
    };
    if ip.src_addr() != src || ip.protocol() != IpProtocol::Icmp {
        return false;
    }
    let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
        return false;
    };
    matches!(
        Icmpv4Repr::parse(&icmp),
        Ok(Icmpv4Repr::EchoReply { ident: i, seq_no: s, .. }) if i == ident && s == seq
    )
}

/// `SIOCETHTOOL` (linux/sockios.h).
const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// `ETHTOOL_STXCSUM`: set TX checksum offload (linux/ethtool.h).
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReqData {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Turns TX checksum offload on or off on `ifname` in the calling thread's
/// namespace (what `ethtool -K <if> tx off` does; TSO goes with it, as the
/// kernel drops TSO without checksum offload).
pub fn set_tx_checksum(ifname: &str, on: bool) -> io::Result<()> {
    super::check_ifname(ifname)?;
    // SAFETY: socket() has no memory preconditions.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(os_error("ethtool: socket"));
    }
    let sock = Fd(raw);
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: on as u32,
    };
    let mut req = IfReqData {
        name: [0; libc::IFNAMSIZ],
        data: &mut value as *mut EthtoolValue as *mut libc::c_void,
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: SIOCETHTOOL reads a `struct ifreq` whose ifr_data points to an
    // `ethtool_value`; both are live, correctly laid out locals.
    let rc = unsafe { libc::ioctl(sock.raw(), SIOCETHTOOL, &mut req as *mut IfReqData) };
    if rc < 0 {
        return Err(os_error(format_args!(
            "ethtool -K {ifname} tx {}",
            if on { "on" } else { "off" }
        )));
    }
    Ok(())
}

/// How to build a [`VethPair`].
#[derive(Clone, Copy, Debug)]
pub struct VethConfig<'a> {
    /// Where the local end (the one flowlane drives) goes; `None` keeps it
    /// in the caller's namespace.
    pub local_ns: Option<&'a NetNs>,
    /// Where the peer end (the kernel's) goes; it gets `peer_addr()`.
    pub peer_ns: &'a NetNs,
    /// RX and TX queues on each end (veth's `numrxqueues`/`numtxqueues`).
    pub queues: u32,
}

/// A veth pair in 10.77.`subnet`.0/24: the peer end in `peer_ns` with
/// address .1 and TX checksum offload off, the local end (for flowlane) with
/// no address, both up. Deleting either end deletes both; that happens on
/// drop.
#[derive(Debug)]
pub struct VethPair {
    local: String,
    peer: String,
    local_ns: Option<String>,
    peer_ns: String,
    subnet: u8,
}

impl VethPair {
    /// A single-queue pair: local end here, peer end in `peer_ns`.
    pub fn new(peer_ns: &NetNs) -> io::Result<VethPair> {
        Self::with_config(VethConfig {
            local_ns: None,
            peer_ns,
            queues: 1,
        })
    }

    pub fn with_config(cfg: VethConfig<'_>) -> io::Result<VethPair> {
        require_root("creating a veth pair")?;
        let base = unique_name('v');
        let subnet = unique_subnet();
        let local = format!("{base}a");
        let peer = format!("{base}b");
        let q = cfg.queues.max(1).to_string();
        ip(&[
            "link",
            "add",
            &local,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        // From here on the guard deletes the pair if a later step fails.
        let mut pair = VethPair {
            local,
            peer,
            local_ns: None,
            peer_ns: cfg.peer_ns.name().to_string(),
            subnet,
        };
        ip(&["link", "set", &pair.peer, "netns", cfg.peer_ns.name()])?;
        if let Some(ns) = cfg.local_ns {
            ip(&["link", "set", &pair.local, "netns", ns.name()])?;
            pair.local_ns = Some(ns.name().to_string());
        }
        let peer_cidr = format!("{}/24", pair.peer_addr());
        cfg.peer_ns
            .ip(&["addr", "add", &peer_cidr, "dev", &pair.peer])?;
        let peer_name = pair.peer.clone();
        cfg.peer_ns
            .run(move || set_tx_checksum(&peer_name, false))??;
        cfg.peer_ns.ip(&["link", "set", &pair.peer, "up"])?;
        pair.local_ip(&["link", "set", &pair.local, "up"])?;
        Ok(pair)
    }

    /// `ip` in the local end's namespace.
    fn local_ip(&self, args: &[&str]) -> io::Result<String> {
        match &self.local_ns {
            Some(ns) => {
                let mut all = vec!["-n", ns.as_str()];
                all.extend_from_slice(args);
                ip(&all)
            }
            None => ip(args),
        }
    }

    /// The local end's name (where flowlane attaches).
    pub fn local_name(&self) -> &str {
        &self.local
    }

    /// The peer end's name (the kernel's, in the peer namespace).
    pub fn peer_name(&self) -> &str {
        &self.peer
    }

    /// The namespace of the local end (`None`: the creator's).
    pub fn local_ns(&self) -> Option<&str> {
        self.local_ns.as_deref()
    }

    /// The namespace of the peer end.
    pub fn peer_ns(&self) -> &str {
        &self.peer_ns
    }

    /// The third octet of this pair's 10.77.x.0/24.
    pub fn subnet(&self) -> u8 {
        self.subnet
    }

    /// 10.77.x.`n`.
    pub fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, n)
    }

    /// The kernel peer's address, 10.77.x.1.
    pub fn peer_addr(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// The address meant for flowlane, 10.77.x.2 (configured nowhere).
    pub fn flowlane_addr(&self) -> Ipv4Addr {
        self.host(2)
    }

    pub fn prefix_len(&self) -> u8 {
        24
    }

    /// Gives the *kernel* on the local end an address 10.77.x.`n`/24 too
    /// (for checking that traffic not meant for flowlane still reaches the
    /// kernel).
    pub fn add_local_kernel_addr(&self, n: u8) -> io::Result<()> {
        let cidr = format!("{}/24", self.host(n));
        self.local_ip(&["addr", "add", &cidr, "dev", &self.local])
            .map(drop)
    }

    /// Kernel interface counters of the local end, as `ip -s link` prints
    /// them (rx bytes, rx packets).
    pub fn local_rx_counters(&self) -> io::Result<(u64, u64)> {
        let out = self.local_ip(&["-s", "link", "show", "dev", &self.local])?;
        parse_rx_counters(&out).ok_or_else(|| {
            io::Error::other(format!(
                "cannot read RX counters of {} from `ip -s link`",
                self.local
            ))
        })
    }
}

/// The RX bytes and packets from `ip -s link show` output.
fn parse_rx_counters(out: &str) -> Option<(u64, u64)> {
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if l.trim_start().starts_with("RX:") {
            let nums: Vec<u64> = lines
                .next()?
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            return Some((*nums.first()?, *nums.get(1)?));
        }
    }
    None
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = self.local_ip(&["link", "del", &self.local]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_an_interface_name_and_differ() {
        let a = unique_name('v');
        let b = unique_name('v');
        assert_ne!(a, b);
        assert!(a.starts_with("fl"));
        assert!(a.len() < 15, "room for the a/b suffix");
    }

    #[test]
    fn rx_counters_parse_from_ip_s_link() {
        let out = "5: flx: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\n    link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n    RX:  bytes packets errors dropped  missed   mcast\n          1234      7      0       0       0       0\n    TX:  bytes packets errors dropped carrier collsns\n           99       1      0       0       0       0\n";
        assert_eq!(parse_rx_counters(out), Some((1234, 7)));
        assert_eq!(parse_rx_counters("nothing"), None);
    }
}
