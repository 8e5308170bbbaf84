//! OS-facing devices: the only place in the stack that makes raw syscalls.
//!
//! Owns:
//! - [`tap`]: [`TapDevice`], an Ethernet tap from `/dev/net/tun` (one fd per
//!   queue), the fallback where AF_XDP is unavailable.
//! - [`afxdp`]: [`XdpDevice`], one AF_XDP socket bound to one (interface,
//!   queue) with its own UMEM and fill/completion/rx/tx rings.
//! - [`bpf`]: the hand-assembled XDP program that sends only flowlane's
//!   traffic (ARP for its address, IPv4 to its address) to the AF_XDP
//!   sockets and passes the rest to the kernel, loaded with raw `bpf(2)`.
//! - [`netns`]: guards for network namespaces and veth pairs used by tests and
//!   the demo ([`NetNs`], [`VethPair`]), all removed on drop.
//!
//! Never: parses protocols above what the XDP filter needs, or reads a clock
//! (the `Device` methods take `now` and ignore it). Every `unsafe` block
//! states why it is sound in a `// SAFETY:` comment; the rest of the crate
//! denies unsafe code.
#![allow(unsafe_code)]

pub mod afxdp;
pub mod bpf;
pub mod netns;
pub mod tap;

pub use afxdp::{AttachMode, XdpDevice, XdpKernelStats, XdpOptions, XdpStats};
pub use netns::{NetNs, VethConfig, VethPair};
pub use tap::{TapDevice, TapStats};

use std::io;

/// The last OS error, with `what` and the errno's meaning in one line, same
/// kind (so callers can still match `PermissionDenied`, `NotFound`, ...).
pub(crate) fn os_error(what: impl std::fmt::Display) -> io::Error {
    let e = io::Error::last_os_error();
    annotate(e, what)
}

/// An OS error with context: the message names the cause in one line, and
/// the errno stays readable through [`errno`].
#[derive(Debug)]
struct Annotated {
    errno: Option<i32>,
    msg: String,
}

impl std::fmt::Display for Annotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Annotated {}

/// `e` with `what` in front of its message; kind and errno kept.
pub(crate) fn annotate(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    let errno = errno(&e);
    io::Error::new(
        e.kind(),
        Annotated {
            errno,
            msg: format!("{what}: {e}"),
        },
    )
}

/// The errno behind an error from this module, also after context was added
/// to it.
pub fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()?
            .downcast_ref::<Annotated>()
            .and_then(|a| a.errno)
    })
}

/// The errno of `e` (0 if it has none).
pub(crate) fn errno_of(e: &io::Error) -> i32 {
    errno(e).unwrap_or(0)
}

/// True when running with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A file descriptor closed on drop.
#[derive(Debug)]
pub(crate) struct Fd(pub(crate) libc::c_int);

impl Fd {
    pub(crate) fn raw(&self) -> libc::c_int {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        if self.0 >= 0 {
            // SAFETY: we own this descriptor (created by us, never handed out
            // for closing) and close it exactly once.
            unsafe { libc::close(self.0) };
        }
    }
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} contains NUL"),
        )
    })?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {name:?} not found in this network namespace"),
        ));
    }
    Ok(idx)
}

/// A name valid for a Linux network interface (1..=15 bytes, no '/', ':',
/// whitespace or NUL).
pub(crate) fn check_ifname(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?} (1..=15 bytes, no '/', ':' or spaces)"),
        ))
    }
}
