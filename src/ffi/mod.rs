//! The C ABI: `include/flowlane.h`, generated from this module by cbindgen.
//!
//! Owns: every `extern "C"` function, the opaque handles C holds
//! (`fl_config`, `fl_runtime`, `fl_ctx`) and the conversions between C's
//! pointers and Rust's slices and addresses. The work is done by safe code
//! in [`config`], [`sockets`] and the runtime wrapper; this file only checks
//! pointers, converts, and reports errors the POSIX way (-1 or NULL, and
//! `errno` on the calling thread).
//!
//! Rules every function here follows:
//! - its body runs inside `ffi_boundary!`, which catches panics (EIO)
//!   and sets errno, so no unwind ever crosses into C;
//! - NULL handles (`fl_config *`, `fl_runtime *`, `fl_ctx *`) are EINVAL,
//!   NULL data pointers EFAULT, and handles that are not live (freed,
//!   another core's context, a context outside its loop) EBADF — checked
//!   against registries or the calling thread, never by reading the
//!   pointer;
//! - it never blocks and never raises a signal.
//!
//! Never: holds C pointers beyond a call, or lets C reach Rust memory
//! except through the opaque handles.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
// The C names are the contract.
#![allow(non_camel_case_types)]

pub mod config;
mod device;
mod runtime;
pub mod sockets;

use core::cell::{Cell, RefCell};
use core::net::{Ipv4Addr, SocketAddrV4};
use core::ptr;
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use libc::{c_int, size_t, socklen_t, ssize_t};

use self::config::Settings;
use self::runtime::FlRuntime;
use self::sockets::{Core, CoreState, Event, Res};
use crate::api::Stack;
use crate::runtime::{CoreContext, CoreStats};
use crate::tcp::State;
use crate::time::Instant;

/// Sets `errno` on the calling thread.
fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns a valid pointer to the calling
    // thread's errno for the thread's whole life.
    unsafe { *libc::__errno_location() = e };
}

thread_local! {
    /// The message of the last failure on this thread (`fl_last_error`).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    /// The context whose loop callback this thread is running, if any.
    static CURRENT: Cell<*mut fl_ctx> = const { Cell::new(ptr::null_mut()) };
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|l| *l.borrow_mut() = c);
}

/// The panic boundary every exported function body runs in: the body is a
/// closure returning `Result<T, Errno>`; `Err(e)` sets errno to `e` and
/// returns `$fail`, and so does a panic (errno EIO). Nothing unwinds into C.
macro_rules! ffi_boundary {
    ($fail:expr, $body:block) => {{
        #[allow(clippy::redundant_closure_call)]
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Res<_> { $body }));
        match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                set_errno(e);
                $fail
            }
            Err(_) => {
                set_last_error("flowlane: internal error (a panic was caught)");
                set_errno(libc::EIO);
                $fail
            }
        }
    }};
}

// ----- handles ------------------------------------------------------------------

/// Settings for `fl_start`: made by `fl_config_new`, filled by
/// `fl_config_set`, freed by `fl_config_free` (the caller owns it; it may be
/// freed right after `fl_start`). Not thread-safe: use it from one thread
/// at a time.
pub struct fl_config {
    settings: Settings,
}

/// A started runtime: made by `fl_start`, run by `fl_run`, stopped by
/// `fl_stop`, freed by `fl_free` (the caller owns it).
pub struct fl_runtime {
    inner: FlRuntime,
}

/// One core's context, passed to the loop callback. It is valid only inside
/// that callback, on that core's thread; flowlane owns it. Every socket call
/// takes it first, and a descriptor belongs to the context that made it.
pub struct fl_ctx {
    state: CoreState,
    /// The core's stack while the callback runs; NULL otherwise.
    stack: *mut Stack,
    now: Instant,
}

/// The per-core loop: called once per iteration on each core until
/// `fl_stop`. Return 0 to go on; any other value stops every core, like
/// `fl_stop`.
pub type fl_loop_fn = Option<unsafe extern "C" fn(ctx: *mut fl_ctx, arg: *mut c_void) -> c_int>;

/// Configurations alive (not yet freed), by address.
static CONFIGS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Runtimes alive, by address: lock-free, so `fl_stop` may check it from a
/// signal handler.
static RUNTIMES: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

fn config_is_live(p: usize) -> bool {
    CONFIGS.lock().map(|c| c.contains(&p)).unwrap_or(false)
}

fn runtime_is_live(p: usize) -> bool {
    p != 0 && RUNTIMES.iter().any(|r| r.load(Ordering::Acquire) == p)
}

fn config_ref<'a>(cfg: *const fl_config) -> Res<&'a fl_config> {
    if cfg.is_null() {
        return Err(libc::EINVAL);
    }
    if !config_is_live(cfg as usize) {
        return Err(libc::EBADF);
    }
    // SAFETY: the pointer came from fl_config_new (Box::into_raw) and has
    // not been freed (it is in the registry).
    Ok(unsafe { &*cfg })
}

fn runtime_ref<'a>(rt: *const fl_runtime) -> Res<&'a fl_runtime> {
    if rt.is_null() {
        return Err(libc::EINVAL);
    }
    if !runtime_is_live(rt as usize) {
        return Err(libc::EBADF);
    }
    // SAFETY: the pointer came from fl_start (Box::into_raw) and has not been
    // freed (it is in the registry). Only shared references are made; the
    // runtime's mutable state is behind atomics and mutexes.
    Ok(unsafe { &*rt })
}

/// Runs `f` on the core whose callback is running on this thread, if `ctx`
/// is its context.
fn with_core<T>(ctx: *const fl_ctx, f: impl FnOnce(&mut Core<'_>) -> Res<T>) -> Res<T> {
    if ctx.is_null() {
        return Err(libc::EINVAL);
    }
    let current = CURRENT.with(Cell::get);
    if !std::ptr::eq(current, ctx) {
        return Err(libc::EBADF);
    }
    // SAFETY: `current` is set only while this thread runs the loop callback
    // of this context, which is alive (owned by the core's app) and not
    // otherwise borrowed during the callback; fl_* calls do not nest.
    let c = unsafe { &mut *current };
    if c.stack.is_null() {
        return Err(libc::EBADF);
    }
    // SAFETY: non-null `stack` points to the core's Stack for the duration of
    // the callback (set just before it, cleared just after).
    let stack = unsafe { &mut *c.stack };
    let mut core = Core {
        st: &mut c.state,
        stack,
        now: c.now,
    };
    f(&mut core)
}

// ----- configuration ---------------------------------------------------------------

/// A configuration with the defaults (one core, no device yet). NULL and
/// errno ENOMEM if it cannot be made.
#[no_mangle]
pub extern "C" fn fl_config_new() -> *mut fl_config {
    ffi_boundary!(ptr::null_mut(), {
        let p = Box::into_raw(Box::new(fl_config {
            settings: Settings::default(),
        }));
        match CONFIGS.lock() {
            Ok(mut c) => c.push(p as usize),
            Err(_) => {
                // SAFETY: `p` was just made by Box::into_raw and never shared.
                drop(unsafe { Box::from_raw(p) });
                return Err(libc::ENOMEM);
            }
        }
        Ok(p)
    })
}

/// Sets one key. The keys are `flowlane serve`'s flags and the stack's
/// tunables; `-` and `_` are the same in a key:
///
/// | key | value |
/// |-----|-------|
/// | device | `xdp` (AF_XDP on an existing interface, queue i for core i) or `tap` (a tap flowlane creates) |
/// | ifname | interface name (required) |
/// | ip | flowlane's `ADDR/PREFIX` (required) |
/// | gateway | next hop `ADDR` for other subnets |
/// | cores | 1..64 (default 1): one loop, device queue and stack per core |
/// | tap_host_ip | `ADDR/PREFIX` for the kernel side of the tap; brings it up |
/// | pcap | `FILE`: core 0 records to FILE, core i to FILE.i |
/// | mac | flowlane's MAC on a tap |
/// | msl_ms, fin_timeout_ms | TIME-WAIT is 2*MSL (default 30000); FIN-WAIT-2 timeout |
/// | rx_buffer, tx_buffer | bytes per connection, `k`/`m` suffixes (default 256k) |
/// | congestion | `reno`, `newreno` (default) or `cubic` |
/// | port_range | ephemeral ports `LOW-HIGH` (default 32768-60999) |
/// | mss, nodelay, timestamps, sack, tail_loss_probe, window_scale, delayed_ack_ms | TCP options |
/// | initial_rto_ms, min_rto_ms, max_rto_ms, syn_retries, data_retries | retransmission |
/// | max_sockets, max_backlog, max_syn_backlog | limits per core |
/// | idle | `busy` (default: spin) or `backoff` (sleep when idle) |
/// | idle_sleep_us | longest idle sleep (sets idle=backoff; default 1000) |
/// | cpus | `none` or a list `0,2,...`: pin core i to cpus[i % n] |
/// | xdp_attach, xdp_zero_copy, xdp_frames, xdp_ring_size, xdp_busy_poll_us | AF_XDP |
/// | stats_interval_ms, verify_checksums | |
/// | coalesce | receive coalescing of in-order segments, as GRO (default on) |
///
/// Returns 0, or -1 with errno EINVAL for an unknown key or a bad value
/// (the configuration is then unchanged; `fl_last_error` says why), EFAULT
/// for a NULL key or value.
///
/// # Safety
/// `cfg` is NULL or from `fl_config_new`; `key` and `value` are NULL or
/// NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn fl_config_set(
    cfg: *mut fl_config,
    key: *const c_char,
    value: *const c_char,
) -> c_int {
    ffi_boundary!(-1, {
        config_ref(cfg)?;
        if key.is_null() || value.is_null() {
            return Err(libc::EFAULT);
        }
        // SAFETY: non-null and NUL-terminated by the caller's contract.
        let (k, v) = unsafe { (CStr::from_ptr(key), CStr::from_ptr(value)) };
        let (Ok(k), Ok(v)) = (k.to_str(), v.to_str()) else {
            set_last_error("fl_config_set: key and value must be UTF-8");
            return Err(libc::EINVAL);
        };
        // SAFETY: live (checked above) and used from one thread at a time
        // by the caller's contract, so this is the only reference.
        let cfg = unsafe { &mut *cfg };
        cfg.settings.set(k, v).map_err(|m| {
            set_last_error(&format!("fl_config_set: {m}"));
            libc::EINVAL
        })?;
        Ok(0)
    })
}

/// Frees a configuration. NULL is ignored; a pointer that is not a live
/// configuration (already freed) is ignored too, with errno EBADF.
///
/// # Safety
/// `cfg` is NULL or a pointer from `fl_config_new`.
#[no_mangle]
pub unsafe extern "C" fn fl_config_free(cfg: *mut fl_config) {
    ffi_boundary!((), {
        if cfg.is_null() {
            return Ok(());
        }
        let mut live = CONFIGS.lock().map_err(|_| libc::EIO)?;
        let Some(i) = live.iter().position(|&p| p == cfg as usize) else {
            return Err(libc::EBADF);
        };
        live.swap_remove(i);
        // SAFETY: live until now and removed from the registry, so this is
        // the only owner and nobody frees it again.
        drop(unsafe { Box::from_raw(cfg) });
        Ok(())
    })
}

// ----- runtime --------------------------------------------------------------------

/// Opens the devices and prepares every core: with `device=tap` it creates
/// the tap (removed again when the runtime is freed), with `device=xdp` it
/// opens one AF_XDP socket per core on queues 0..cores-1 and attaches the
/// XDP program that steers flowlane's frames to them. Returns NULL with
/// errno on failure (EINVAL: incomplete configuration; ENODEV: no such
/// interface; EPERM: needs root or CAP_NET_ADMIN; ...) and
/// `fl_last_error` names the cause. The configuration can be freed after.
///
/// # Safety
/// `cfg` is NULL or from `fl_config_new`.
#[no_mangle]
pub unsafe extern "C" fn fl_start(cfg: *const fl_config) -> *mut fl_runtime {
    ffi_boundary!(ptr::null_mut(), {
        let cfg = config_ref(cfg)?;
        let inner = FlRuntime::start(&cfg.settings).map_err(|(e, m)| {
            set_last_error(&format!("fl_start: {m}"));
            e
        })?;
        let p = Box::into_raw(Box::new(fl_runtime { inner }));
        let registered = RUNTIMES.iter().any(|r| {
            r.compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        if !registered {
            // SAFETY: made above by Box::into_raw, never shared.
            drop(unsafe { Box::from_raw(p) });
            set_last_error("fl_start: too many runtimes (256) alive at once");
            return Err(libc::EMFILE);
        }
        Ok(p)
    })
}

/// Owns one core's context for its thread; frees it when the core ends.
struct CoreApp {
    ctx: *mut fl_ctx,
    callback: unsafe extern "C" fn(*mut fl_ctx, *mut c_void) -> c_int,
    arg: usize,
    stop: Arc<AtomicBool>,
    exited: Arc<AtomicUsize>,
}

// SAFETY: `ctx` is owned by this value alone (made by Box::into_raw, freed
// in Drop) and only dereferenced on the thread that runs the core, which is
// the thread this value moves to. `arg` is the caller's: fl_run's contract
// makes it usable from every core.
unsafe impl Send for CoreApp {}

impl CoreApp {
    fn iterate(&mut self, cx: &mut CoreContext<'_>) {
        if self.stop.load(Ordering::Acquire) {
            cx.stop();
            return;
        }
        {
            // SAFETY: `ctx` is live (freed only in Drop) and not borrowed
            // elsewhere: C only reaches it through fl_* calls, which run
            // inside the callback below.
            let ctx = unsafe { &mut *self.ctx };
            ctx.stack = &mut *cx.stack as *mut Stack;
            ctx.now = cx.now;
        }
        CURRENT.with(|c| c.set(self.ctx));
        // SAFETY: the callback is the caller's loop function, called with
        // the arguments fl_run documents.
        let rc = unsafe { (self.callback)(self.ctx, self.arg as *mut c_void) };
        CURRENT.with(|c| c.set(ptr::null_mut()));
        // SAFETY: as above; the callback has returned.
        unsafe { (*self.ctx).stack = ptr::null_mut() };
        if rc != 0 {
            self.stop.store(true, Ordering::Release);
            cx.stop();
        }
    }
}

impl Drop for CoreApp {
    fn drop(&mut self) {
        CURRENT.with(|c| {
            if c.get() == self.ctx {
                c.set(ptr::null_mut());
            }
        });
        // SAFETY: made by Box::into_raw in fl_run and freed only here.
        drop(unsafe { Box::from_raw(self.ctx) });
        if std::thread::panicking() {
            self.stop.store(true, Ordering::Release);
        }
        self.exited.fetch_add(1, Ordering::AcqRel);
    }
}

/// Runs every core's loop on its own thread and calls `loop(ctx, arg)` once
/// per iteration on each core (after the core received and processed a
/// burst of frames), until `fl_stop` or a callback returns non-zero. Then
/// every core ends, its sockets vanish with its stack (close them first for
/// a graceful end), and `fl_run` returns 0 — or -1 with errno: EINVAL for a
/// NULL loop or a runtime that already ran (a runtime runs once), EIO if a
/// core failed. `arg` is shared by all cores: index per-core state by
/// `fl_ctx_core(ctx)`. Blocks the calling thread, which does no network work.
///
/// # Safety
/// `rt` is NULL or from `fl_start`; `loop` is safe to call from the cores'
/// threads with `arg`.
#[no_mangle]
pub unsafe extern "C" fn fl_run(
    rt: *mut fl_runtime,
    r#loop: fl_loop_fn,
    arg: *mut c_void,
) -> c_int {
    ffi_boundary!(-1, {
        let rt = runtime_ref(rt)?;
        let callback = r#loop.ok_or(libc::EINVAL)?;
        if rt.inner.running.swap(true, Ordering::AcqRel) {
            set_last_error("fl_run: already running");
            return Err(libc::EALREADY);
        }
        let stop = rt.inner.stop.clone();
        let arg = arg as usize;
        let result = rt.inner.run(|core, exited| {
            let mut app = CoreApp {
                ctx: Box::into_raw(Box::new(fl_ctx {
                    state: CoreState::new(core),
                    stack: ptr::null_mut(),
                    now: Instant::ZERO,
                })),
                callback,
                arg,
                stop: stop.clone(),
                exited,
            };
            move |cx: &mut CoreContext<'_>| app.iterate(cx)
        });
        rt.inner.running.store(false, Ordering::Release);
        result.map_err(|(e, m)| {
            set_last_error(&format!("fl_run: {m}"));
            e
        })?;
        Ok(0)
    })
}

/// Asks every core to stop; `fl_run` returns soon after. Safe from any
/// thread, from a loop callback and from a signal handler (it only checks a
/// lock-free registry and stores a flag). A stop before `fl_run` makes it
/// return at once. NULL or a freed runtime: nothing happens.
///
/// # Safety
/// `rt` is NULL or from `fl_start`.
#[no_mangle]
pub unsafe extern "C" fn fl_stop(rt: *mut fl_runtime) {
    // Signal-safe: no allocation, no lock; catch_unwind costs nothing
    // unless something panics, which nothing here can.
    ffi_boundary!((), {
        if rt.is_null() || !runtime_is_live(rt as usize) {
            return Ok(());
        }
        // SAFETY: live (in the registry); `stop` is an Arc<AtomicBool> set
        // once at start and never moved; storing to it is async-signal-safe.
        unsafe { (*rt).inner.stop.store(true, Ordering::Release) };
        Ok(())
    })
}

/// Frees a runtime that is not running (before `fl_run`, or after it
/// returned): devices are closed, a tap disappears. NULL is ignored. A
/// running runtime is not freed (errno EBUSY); neither is one already freed
/// (errno EBADF).
///
/// # Safety
/// `rt` is NULL or from `fl_start`, and no other thread uses it during the
/// call.
#[no_mangle]
pub unsafe extern "C" fn fl_free(rt: *mut fl_runtime) {
    ffi_boundary!((), {
        if rt.is_null() {
            return Ok(());
        }
        let r = runtime_ref(rt)?;
        if r.inner.running.load(Ordering::Acquire) {
            return Err(libc::EBUSY);
        }
        let unregistered = RUNTIMES.iter().any(|slot| {
            slot.compare_exchange(rt as usize, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        if !unregistered {
            return Err(libc::EBADF);
        }
        // SAFETY: made by Box::into_raw in fl_start, removed from the registry
        // just now, so nobody else frees it.
        drop(unsafe { Box::from_raw(rt) });
        Ok(())
    })
}

/// The number of cores the runtime drives, or -1 (EINVAL, EBADF).
///
/// # Safety
/// `rt` is NULL or from `fl_start`.
#[no_mangle]
pub unsafe extern "C" fn fl_runtime_cores(rt: *const fl_runtime) -> c_int {
    ffi_boundary!(-1, { Ok(runtime_ref(rt)?.inner.cores() as c_int) })
}

/// The core (0..cores-1) of the context whose loop is running on this
/// thread, or -1 with EINVAL (NULL) or EBADF (not this thread's live
/// context).
#[no_mangle]
pub extern "C" fn fl_ctx_core(ctx: *const fl_ctx) -> c_int {
    ffi_boundary!(-1, { with_core(ctx, |c| Ok(c.st.core() as c_int)) })
}

/// The core's clock in microseconds (the time of this loop iteration; it
/// starts near 0 when the runtime starts), or 0 with errno for a bad `ctx`.
#[no_mangle]
pub extern "C" fn fl_ctx_now_us(ctx: *const fl_ctx) -> u64 {
    ffi_boundary!(0, { with_core(ctx, |c| Ok(c.now.total_micros())) })
}

/// A description of the last failure on this thread (`fl_config_set`,
/// `fl_start`, `fl_run`), or "" if none. Valid until the next failing call
/// on this thread; owned by flowlane.
#[no_mangle]
pub extern "C" fn fl_last_error() -> *const c_char {
    ffi_boundary!(c"".as_ptr(), {
        Ok(LAST_ERROR
            .try_with(|l| l.borrow().as_ptr())
            .unwrap_or(c"".as_ptr()))
    })
}

/// flowlane's version, e.g. "0.1.0" (a static string).
#[no_mangle]
pub extern "C" fn fl_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"",
        };
    ffi_boundary!(c"".as_ptr(), { Ok(VERSION.as_ptr()) })
}

// ----- addresses and buffers ----------------------------------------------------------

/// Reads a `struct sockaddr_in`.
///
/// # Safety
/// `addr` is NULL or valid for `len` bytes.
unsafe fn read_sockaddr(addr: *const libc::sockaddr, len: socklen_t) -> Res<SocketAddrV4> {
    if addr.is_null() {
        return Err(libc::EFAULT);
    }
    if (len as usize) < core::mem::size_of::<libc::sockaddr_in>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: `addr` is valid for at least sizeof(sockaddr_in) bytes (checked
    // above, by the caller's contract); it may be unaligned.
    let sin = unsafe { ptr::read_unaligned(addr as *const libc::sockaddr_in) };
    if sin.sin_family != libc::AF_INET as libc::sa_family_t {
        return Err(libc::EAFNOSUPPORT);
    }
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
        u16::from_be(sin.sin_port),
    ))
}

/// Copies `bytes` into a caller's buffer of `*len` bytes, truncating as the
/// kernel does, and sets `*len` to the bytes' full length (or, with
/// `report_copied`, to what was copied).
///
/// # Safety
/// `out` and `len` are NULL or valid; `out` holds `*len` bytes.
unsafe fn copy_out(
    bytes: &[u8],
    out: *mut c_void,
    len: *mut socklen_t,
    report_copied: bool,
) -> Res<()> {
    if out.is_null() || len.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: `len` is valid (caller's contract, checked non-null).
    let cap = unsafe { ptr::read_unaligned(len) };
    if (cap as c_int) < 0 {
        return Err(libc::EINVAL);
    }
    let n = bytes.len().min(cap as usize);
    // SAFETY: `out` holds `cap >= n` bytes; `bytes` is a different object.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), out as *mut u8, n) };
    let reported = if report_copied { n } else { bytes.len() };
    // SAFETY: as above.
    unsafe { ptr::write_unaligned(len, reported as socklen_t) };
    Ok(())
}

fn sockaddr_bytes(a: SocketAddrV4) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..2].copy_from_slice(&(libc::AF_INET as libc::sa_family_t).to_ne_bytes());
    b[2..4].copy_from_slice(&a.port().to_be_bytes());
    b[4..8].copy_from_slice(&a.ip().octets());
    b
}

const _: () = assert!(core::mem::size_of::<libc::sockaddr_in>() == 16);

/// Writes an address for accept/getsockname/getpeername.
///
/// # Safety
/// As [`copy_out`].
unsafe fn write_sockaddr(
    a: SocketAddrV4,
    out: *mut libc::sockaddr,
    len: *mut socklen_t,
) -> Res<()> {
    // SAFETY: forwarded contract.
    unsafe { copy_out(&sockaddr_bytes(a), out as *mut c_void, len, false) }
}

/// A caller's buffer as a slice (empty for length 0, whatever the pointer).
///
/// # Safety
/// `buf` is valid for `len` bytes when non-null.
unsafe fn slice_in<'a>(buf: *const c_void, len: size_t) -> Res<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(libc::EFAULT);
    }
    if len > isize::MAX as usize {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null, valid for `len` bytes by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(buf as *const u8, len) })
}

/// # Safety
/// `buf` is valid for writes of `len` bytes when non-null.
unsafe fn slice_out<'a>(buf: *mut c_void, len: size_t) -> Res<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(libc::EFAULT);
    }
    if len > isize::MAX as usize {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-null, valid for `len` writable bytes by the caller's
    // contract, and not aliased during the call.
    Ok(unsafe { core::slice::from_raw_parts_mut(buf as *mut u8, len) })
}

/// Most iovecs per call (Linux's IOV_MAX).
const IOV_MAX: c_int = 1024;

/// # Safety
/// `iov` holds `cnt` valid iovecs when non-null, each valid for its length.
unsafe fn iovecs<'a>(iov: *const libc::iovec, cnt: c_int) -> Res<&'a [libc::iovec]> {
    if !(0..=IOV_MAX).contains(&cnt) {
        return Err(libc::EINVAL);
    }
    if cnt == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: `iov` holds `cnt` iovecs by the caller's contract.
    let v = unsafe { core::slice::from_raw_parts(iov, cnt as usize) };
    let total = v
        .iter()
        .try_fold(0usize, |t, i| t.checked_add(i.iov_len))
        .ok_or(libc::EINVAL)?;
    if total > isize::MAX as usize {
        return Err(libc::EINVAL);
    }
    Ok(v)
}

fn len_result(r: Res<usize>) -> Res<ssize_t> {
    r.map(|n| n as ssize_t)
}

// ----- sockets ----------------------------------------------------------------------

/// `socket(AF_INET, SOCK_STREAM, 0)` on this core: a non-blocking TCP
/// socket (SOCK_NONBLOCK and SOCK_CLOEXEC are accepted and implied).
/// Returns a descriptor (> 0, meaningful only to this core's context) or -1:
/// EAFNOSUPPORT (not AF_INET), EPROTONOSUPPORT (not TCP), EMFILE (no free
/// descriptor or socket), EINVAL/EBADF (ctx). A descriptor encodes a slot,
/// the core and a generation (so a closed, stale or other core's descriptor
/// is EBADF): it is a large int, not below FD_SETSIZE — find per-connection
/// state through `epoll_event.data`, not an array indexed by descriptor.
#[no_mangle]
pub extern "C" fn fl_socket(
    ctx: *mut fl_ctx,
    domain: c_int,
    r#type: c_int,
    protocol: c_int,
) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| c.socket(domain, r#type, protocol))
    })
}

/// `bind(2)` to an address of this stack (or INADDR_ANY); port 0 picks a
/// free port. Errors: EADDRINUSE, EADDRNOTAVAIL (not our address), EINVAL
/// (already bound, or `addrlen` too short), EAFNOSUPPORT, EFAULT, EBADF.
///
/// # Safety
/// `addr` is NULL or valid for `addrlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn fl_bind(
    ctx: *mut fl_ctx,
    fd: c_int,
    addr: *const libc::sockaddr,
    addrlen: socklen_t,
) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            c.check_sock(fd)?;
            // SAFETY: forwarded contract.
            let a = unsafe { read_sockaddr(addr, addrlen) }?;
            c.bind(fd, a).map(|()| 0)
        })
    })
}

/// `listen(2)`. A backlog of 0 is 1, a negative one the maximum
/// (`max_backlog`). Calling it again resizes the backlog. Every core that
/// should accept connections listens: the RSS hash spreads flows over the
/// cores. Errors: EINVAL (connected socket), EADDRINUSE, EBADF.
#[no_mangle]
pub extern "C" fn fl_listen(ctx: *mut fl_ctx, fd: c_int, backlog: c_int) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| c.listen(fd, backlog).map(|()| 0))
    })
}

/// `accept(2)`: the next established connection, as a new descriptor; its
/// peer goes to `addr`/`addrlen` (`addr` may be NULL). Errors: EAGAIN (none
/// waiting), EINVAL (not listening), EMFILE, EFAULT, EBADF.
///
/// # Safety
/// `addr` is NULL or holds `*addrlen` bytes; `addrlen` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn fl_accept(
    ctx: *mut fl_ctx,
    fd: c_int,
    addr: *mut libc::sockaddr,
    addrlen: *mut socklen_t,
) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            // As on Linux, `addrlen` is ignored when `addr` is NULL.
            if !addr.is_null() && addrlen.is_null() {
                return Err(libc::EFAULT);
            }
            if !addr.is_null() {
                // SAFETY: non-null and valid by the caller's contract.
                let cap = unsafe { ptr::read_unaligned(addrlen) };
                if (cap as c_int) < 0 {
                    return Err(libc::EINVAL);
                }
            }
            let (child, peer) = c.accept(fd)?;
            if !addr.is_null() {
                // SAFETY: forwarded contract (both non-null here).
                unsafe { write_sockaddr(peer, addr, addrlen) }?;
            }
            Ok(child)
        })
    })
}

/// `connect(2)`, non-blocking: -1 with EINPROGRESS; the socket turns
/// writable (EPOLLOUT) when the handshake ends, and `SO_ERROR` then says
/// how (0, ECONNREFUSED, ETIMEDOUT, ...). Calling it again returns
/// EALREADY while in progress, EISCONN once connected, or the error.
/// Other errors: EADDRNOTAVAIL (no free local port), EADDRINUSE, EISCONN
/// (listening), EAFNOSUPPORT, EINVAL, EFAULT, EBADF.
///
/// # Safety
/// `addr` is NULL or valid for `addrlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn fl_connect(
    ctx: *mut fl_ctx,
    fd: c_int,
    addr: *const libc::sockaddr,
    addrlen: socklen_t,
) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            c.check_sock(fd)?;
            // SAFETY: forwarded contract.
            let a = unsafe { read_sockaddr(addr, addrlen) }?;
            c.connect(fd, a).map(|()| 0)
        })
    })
}

fn check_send_flags(flags: c_int) -> Res<()> {
    if flags & libc::MSG_OOB != 0 {
        return Err(libc::EOPNOTSUPP);
    }
    Ok(())
}

/// `send(2)`: queues what fits in the send buffer and returns how much
/// (maybe less than `len`), or -1: EAGAIN (buffer full), ENOTCONN (not
/// connected), EPIPE (shut down for writing, or reset by the peer — never a
/// signal; MSG_NOSIGNAL is implied), ETIMEDOUT, EFAULT, EBADF. Flags:
/// MSG_DONTWAIT, MSG_NOSIGNAL, MSG_MORE are accepted (every call is
/// non-blocking); MSG_OOB is EOPNOTSUPP.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn fl_send(
    ctx: *mut fl_ctx,
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
) -> ssize_t {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            c.check_sock(fd)?;
            check_send_flags(flags)?;
            // SAFETY: forwarded contract.
            let data = unsafe { slice_in(buf, len) }?;
            len_result(c.send(fd, data))
        })
    })
}

/// `recv(2)`: bytes read, 0 at the end of the stream, or -1: EAGAIN
/// (nothing yet), ENOTCONN, ECONNRESET, ETIMEDOUT, EFAULT, EBADF. MSG_PEEK
/// reads without consuming; MSG_DONTWAIT and MSG_WAITALL are accepted (no
/// call waits); MSG_OOB is EINVAL.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn fl_recv(
    ctx: *mut fl_ctx,
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
) -> ssize_t {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            c.check_sock(fd)?;
            if flags & libc::MSG_OOB != 0 {
                return Err(libc::EINVAL);
            }
            // SAFETY: forwarded contract.
            let out = unsafe { slice_out(buf, len) }?;
            len_result(c.recv(fd, out, flags & libc::MSG_PEEK != 0))
        })
    })
}

/// `write(2)` on a socket: `fl_send` with no flags.
///
/// # Safety
/// As `fl_send`.
#[no_mangle]
pub unsafe extern "C" fn fl_write(
    ctx: *mut fl_ctx,
    fd: c_int,
    buf: *const c_void,
    len: size_t,
) -> ssize_t {
    // SAFETY: forwarded contract.
    unsafe { fl_send(ctx, fd, buf, len, 0) }
}

/// `read(2)` on a socket: `fl_recv` with no flags.
///
/// # Safety
/// As `fl_recv`.
#[no_mangle]
pub unsafe extern "C" fn fl_read(
    ctx: *mut fl_ctx,
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
) -> ssize_t {
    // SAFETY: forwarded contract.
    unsafe { fl_recv(ctx, fd, buf, len, 0) }
}

/// `writev(2)`: like `fl_send` over the buffers in order. EINVAL for
/// `iovcnt` < 0 or > 1024.
///
/// # Safety
/// `iov` is NULL or holds `iovcnt` iovecs, each valid for its length.
#[no_mangle]
pub unsafe extern "C" fn fl_writev(
    ctx: *mut fl_ctx,
    fd: c_int,
    iov: *const libc::iovec,
    iovcnt: c_int,
) -> ssize_t {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            c.check_sock(fd)?;
            // SAFETY: forwarded contract.
            let v = unsafe { iovecs(iov, iovcnt) }?;
            let bufs = v
                .iter()
                // SAFETY: each iovec is valid for its length (contract).
                .map(|i| unsafe { slice_in(i.iov_base, i.iov_len) })
                .collect::<Res<Vec<&[u8]>>>()?;
            len_result(c.send_vectored(fd, &bufs))
        })
    })
}

/// `readv(2)`: like `fl_recv` into the buffers in order.
///
/// # Safety
/// `iov` is NULL or holds `iovcnt` iovecs, each valid for writes of its
/// length, none overlapping.
#[no_mangle]
pub unsafe extern "C" fn fl_readv(
    ctx: *mut fl_ctx,
    fd: c_int,
    iov: *const libc::iovec,
    iovcnt: c_int,
) -> ssize_t {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            c.check_sock(fd)?;
            // SAFETY: forwarded contract.
            let v = unsafe { iovecs(iov, iovcnt) }?;
            let mut bufs = v
                .iter()
                // SAFETY: each iovec is valid for writes of its length and
                // they do not overlap (contract).
                .map(|i| unsafe { slice_out(i.iov_base, i.iov_len) })
                .collect::<Res<Vec<&mut [u8]>>>()?;
            len_result(c.recv_vectored(fd, &mut bufs, false))
        })
    })
}

/// `shutdown(2)` with SHUT_RD, SHUT_WR or SHUT_RDWR. Errors: EINVAL (bad
/// `how`), ENOTCONN, EBADF.
#[no_mangle]
pub extern "C" fn fl_shutdown(ctx: *mut fl_ctx, fd: c_int, how: c_int) -> c_int {
    ffi_boundary!(-1, { with_core(ctx, |c| c.shutdown(fd, how).map(|()| 0)) })
}

/// `close(2)`: the descriptor is gone at once (closing it again is EBADF)
/// and leaves every epoll set; the connection finishes on its own (FIN,
/// TIME-WAIT), or aborts with RST under SO_LINGER {1, 0} or with unread
/// data. Closes epoll descriptors too.
#[no_mangle]
pub extern "C" fn fl_close(ctx: *mut fl_ctx, fd: c_int) -> c_int {
    ffi_boundary!(-1, { with_core(ctx, |c| c.close(fd).map(|()| 0)) })
}

/// `setsockopt(2)`. SOL_SOCKET: SO_REUSEADDR, SO_REUSEPORT (accepted; each
/// core listens in its own stack anyway), SO_KEEPALIVE, SO_LINGER
/// (`struct linger`), SO_RCVBUF/SO_SNDBUF (bytes, taken as given, not
/// doubled; they size buffers of connections made after the call).
/// IPPROTO_TCP: TCP_NODELAY, TCP_KEEPIDLE and TCP_KEEPINTVL (1..32767 s),
/// TCP_KEEPCNT (1..127). Errors: ENOPROTOOPT (other options), EINVAL
/// (`optlen` too short or value out of range), EFAULT, EBADF.
///
/// # Safety
/// `optval` is NULL or valid for `optlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn fl_setsockopt(
    ctx: *mut fl_ctx,
    fd: c_int,
    level: c_int,
    optname: c_int,
    optval: *const c_void,
    optlen: socklen_t,
) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            c.check_sock(fd)?;
            if optval.is_null() {
                return Err(libc::EFAULT);
            }
            // SAFETY: forwarded contract (non-null checked).
            let val = unsafe { slice_in(optval, optlen as size_t) }?;
            c.setsockopt(fd, level, optname, val).map(|()| 0)
        })
    })
}

/// `getsockopt(2)`: the options `fl_setsockopt` takes, plus SO_ERROR (the
/// pending error, cleared by reading it), SO_TYPE, SO_DOMAIN, SO_PROTOCOL,
/// SO_ACCEPTCONN, TCP_MAXSEG and TCP_INFO (Linux's `struct tcp_info`: state,
/// options, rto, mss, rtt, rttvar, cwnd, ssthresh, retransmits, bytes and
/// segments; the rest 0). The value is truncated to `*optlen`, which is set
/// to the bytes written. Errors: ENOPROTOOPT, EINVAL, EFAULT, EBADF.
///
/// # Safety
/// `optval` is NULL or holds `*optlen` bytes; `optlen` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn fl_getsockopt(
    ctx: *mut fl_ctx,
    fd: c_int,
    level: c_int,
    optname: c_int,
    optval: *mut c_void,
    optlen: *mut socklen_t,
) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            c.check_sock(fd)?;
            if optval.is_null() || optlen.is_null() {
                return Err(libc::EFAULT);
            }
            let v = c.getsockopt(fd, level, optname)?;
            // SAFETY: forwarded contract.
            unsafe { copy_out(&v, optval, optlen, true) }?;
            Ok(0)
        })
    })
}

/// `getsockname(2)`: the local address (0.0.0.0:0 before bind). Errors:
/// EFAULT, EINVAL (negative `*addrlen`), EBADF.
///
/// # Safety
/// `addr` holds `*addrlen` bytes; `addrlen` is valid.
#[no_mangle]
pub unsafe extern "C" fn fl_getsockname(
    ctx: *mut fl_ctx,
    fd: c_int,
    addr: *mut libc::sockaddr,
    addrlen: *mut socklen_t,
) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            let a = c.local_addr(fd)?;
            // SAFETY: forwarded contract.
            unsafe { write_sockaddr(a, addr, addrlen) }?;
            Ok(0)
        })
    })
}

/// `getpeername(2)`: the peer's address. Errors: ENOTCONN, EFAULT, EINVAL,
/// EBADF.
///
/// # Safety
/// `addr` holds `*addrlen` bytes; `addrlen` is valid.
#[no_mangle]
pub unsafe extern "C" fn fl_getpeername(
    ctx: *mut fl_ctx,
    fd: c_int,
    addr: *mut libc::sockaddr,
    addrlen: *mut socklen_t,
) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            let a = c.peer_addr(fd)?;
            // SAFETY: forwarded contract.
            unsafe { write_sockaddr(a, addr, addrlen) }?;
            Ok(0)
        })
    })
}

/// `fcntl(2)` for ported code: F_GETFL reports O_RDWR|O_NONBLOCK, F_SETFL
/// and F_SETFD are accepted (sockets are always non-blocking), F_GETFD
/// reports FD_CLOEXEC; other commands are EINVAL. EBADF for a bad fd.
#[no_mangle]
pub extern "C" fn fl_fcntl(ctx: *mut fl_ctx, fd: c_int, cmd: c_int, arg: c_int) -> c_int {
    ffi_boundary!(-1, { with_core(ctx, |c| c.fcntl(fd, cmd, arg)) })
}

// ----- epoll ------------------------------------------------------------------------

/// A new epoll instance on this core (a descriptor in the same space as the
/// sockets; `fl_close` frees it). -1 with EMFILE, EINVAL/EBADF (ctx).
#[no_mangle]
pub extern "C" fn fl_epoll_create(ctx: *mut fl_ctx) -> c_int {
    ffi_boundary!(-1, { with_core(ctx, |c| c.epoll_create()) })
}

/// `epoll_ctl(2)`: EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL of one of this
/// core's sockets. Events: EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLPRI (never
/// reported), EPOLLET, EPOLLONESHOT; EPOLLERR and EPOLLHUP are always
/// reported. Errors: EEXIST (ADD twice), ENOENT (MOD/DEL of a socket not in
/// the set), EINVAL (`epfd` not an epoll instance, `fd == epfd`, an epoll
/// `fd`, bad `op`), EFAULT (NULL `event` for ADD/MOD), EBADF.
///
/// # Safety
/// `event` is NULL or points to a `struct epoll_event`.
#[no_mangle]
pub unsafe extern "C" fn fl_epoll_ctl(
    ctx: *mut fl_ctx,
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *mut libc::epoll_event,
) -> c_int {
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            let ev = if event.is_null() {
                if op != libc::EPOLL_CTL_DEL {
                    c.epoll_ctl(epfd, op, fd, None)?;
                    return Err(libc::EFAULT);
                }
                None
            } else {
                // SAFETY: points to an epoll_event (contract); it may be
                // packed, so it is read unaligned.
                let e = unsafe { ptr::read_unaligned(event) };
                Some(Event {
                    events: e.events,
                    data: e.u64,
                })
            };
            c.epoll_ctl(epfd, op, fd, ev).map(|()| 0)
        })
    })
}

/// `epoll_wait(2)`: fills up to `maxevents` events (EPOLLIN, EPOLLOUT,
/// EPOLLRDHUP, EPOLLERR, EPOLLHUP as Linux's TCP reports them) and returns
/// how many. Level-triggered by default; with EPOLLET a bit is reported only
/// when it newly appears (read, write or accept until EAGAIN, or until
/// less than asked for, before waiting for the next edge).
///
/// It never waits: flowlane runs to completion, so there is nothing to wait
/// for inside a loop callback — the frames that would make a socket ready
/// are received between callbacks. `timeout_ms` is accepted for source
/// compatibility and every value behaves like 0; the loop is called again
/// after the next poll of the device. A call looks only at the sockets a
/// segment, a timer or a call touched since the last call, and at
/// level-triggered ones that were still ready (Linux's ready list), so its
/// cost does not grow with idle registrations. Errors: EINVAL (`maxevents` <= 0,
/// `epfd` not an epoll instance), EFAULT (NULL `events`), EBADF.
///
/// # Safety
/// `events` is NULL or holds `maxevents` `struct epoll_event`s.
#[no_mangle]
pub unsafe extern "C" fn fl_epoll_wait(
    ctx: *mut fl_ctx,
    epfd: c_int,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    timeout_ms: c_int,
) -> c_int {
    let _ = timeout_ms;
    ffi_boundary!(-1, {
        with_core(ctx, |c| {
            if maxevents <= 0 {
                return Err(libc::EINVAL);
            }
            if events.is_null() {
                return Err(libc::EFAULT);
            }
            let ready = c.epoll_wait(epfd, maxevents as usize)?;
            for (i, e) in ready.iter().enumerate() {
                // SAFETY: `events` holds `maxevents` entries and
                // `i < ready.len() <= maxevents`; the struct may be packed.
                unsafe {
                    ptr::write_unaligned(
                        events.add(i),
                        libc::epoll_event {
                            events: e.events,
                            u64: e.data,
                        },
                    )
                };
            }
            Ok(ready.len() as c_int)
        })
    })
}

// ----- statistics -------------------------------------------------------------------

/// Most cores a runtime drives (`cores` key).
pub const FL_MAX_CORES: usize = 64;

const _: () = assert!(FL_MAX_CORES == config::MAX_CORES);

/// The number of TCP states, and of entries in `fl_stats.states`.
pub const FL_TCP_STATE_COUNT: usize = 11;

/// The TCP states of RFC 9293, as indexes into `fl_stats.states`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum fl_tcp_state {
    FL_TCP_CLOSED = 0,
    FL_TCP_LISTEN = 1,
    FL_TCP_SYN_SENT = 2,
    FL_TCP_SYN_RECEIVED = 3,
    FL_TCP_ESTABLISHED = 4,
    FL_TCP_FIN_WAIT_1 = 5,
    FL_TCP_FIN_WAIT_2 = 6,
    FL_TCP_CLOSE_WAIT = 7,
    FL_TCP_CLOSING = 8,
    FL_TCP_LAST_ACK = 9,
    FL_TCP_TIME_WAIT = 10,
}

const _: () = {
    assert!(FL_TCP_STATE_COUNT == State::COUNT);
    assert!(fl_tcp_state::FL_TCP_CLOSED as usize == State::Closed as usize);
    assert!(fl_tcp_state::FL_TCP_LISTEN as usize == State::Listen as usize);
    assert!(fl_tcp_state::FL_TCP_SYN_SENT as usize == State::SynSent as usize);
    assert!(fl_tcp_state::FL_TCP_SYN_RECEIVED as usize == State::SynReceived as usize);
    assert!(fl_tcp_state::FL_TCP_ESTABLISHED as usize == State::Established as usize);
    assert!(fl_tcp_state::FL_TCP_FIN_WAIT_1 as usize == State::FinWait1 as usize);
    assert!(fl_tcp_state::FL_TCP_FIN_WAIT_2 as usize == State::FinWait2 as usize);
    assert!(fl_tcp_state::FL_TCP_CLOSE_WAIT as usize == State::CloseWait as usize);
    assert!(fl_tcp_state::FL_TCP_CLOSING as usize == State::Closing as usize);
    assert!(fl_tcp_state::FL_TCP_LAST_ACK as usize == State::LastAck as usize);
    assert!(fl_tcp_state::FL_TCP_TIME_WAIT as usize == State::TimeWait as usize);
};

/// Counters of a runtime (summed over its cores, or of one core), as the
/// cores last published them (every `stats_interval_ms`, and when they
/// stop). All fields are 64-bit; `reserved` keeps room for counters to come
/// without changing the struct's size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct fl_stats {
    /// Cores counted.
    pub cores: u64,
    /// Loop iterations.
    pub loops: u64,
    /// Sockets per TCP state, indexed by `enum fl_tcp_state` (LISTEN counts
    /// listeners; TIME_WAIT includes closed connections' TIME-WAIT records).
    pub states: [u64; FL_TCP_STATE_COUNT],
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Malformed frames dropped.
    pub rx_malformed: u64,
    /// Frames for other addresses, ignored.
    pub rx_not_for_us: u64,
    /// Frames the device refused.
    pub tx_dropped: u64,
    pub arp_requests_sent: u64,
    pub arp_replies_sent: u64,
    pub icmp_echo_replies: u64,
    /// TCP frames handed to the core that owns their flow.
    pub misdirected: u64,
    pub segments_in: u64,
    pub segments_out: u64,
    /// Segments that reached no socket.
    pub no_socket: u64,
    pub rst_sent: u64,
    pub syn_queue_overflow: u64,
    pub accept_queue_overflow: u64,
    /// Active opens.
    pub connections_opened: u64,
    pub connections_accepted: u64,
    pub connections_reset: u64,
    /// Segments held back because the device queue was full.
    pub tx_backpressure: u64,
    pub time_wait_records: u64,
    /// Connects that failed for want of a free local port.
    pub ports_exhausted: u64,
    /// Frames that arrived from other cores' mailboxes.
    pub mailbox_in: u64,
    /// Frames dropped because a mailbox was full.
    pub mailbox_dropped: u64,
    /// Frames the device (AF_XDP socket or tap) delivered to the stack.
    pub dev_rx_frames: u64,
    /// Bytes of those frames.
    pub dev_rx_bytes: u64,
    /// Frames the device accepted for sending.
    pub dev_tx_frames: u64,
    /// Bytes of those frames.
    pub dev_tx_bytes: u64,
    /// Frames that reached the device but not the stack: AF_XDP's kernel
    /// `rx_dropped`, `rx_ring_full` and invalid descriptors; tap's frames
    /// over the MTU.
    pub dev_rx_dropped: u64,
    /// Times a frame arrived while the AF_XDP fill ring was empty.
    pub dev_rx_fill_ring_empty: u64,
    /// Frames the device did not send (no buffer or descriptor, queue full,
    /// too large, invalid descriptor, write error).
    pub dev_tx_dropped: u64,
    /// AF_XDP transmit kicks retried because the kernel was busy.
    pub dev_tx_kick_retries: u64,
    /// AF_XDP transmit kicks that failed or gave up with frames queued.
    pub dev_tx_kick_errors: u64,
    /// TCP segments that went through TCP coalesced with others of their
    /// receive burst (receive coalescing, as Linux's GRO).
    pub rx_coalesced: u64,
    pub reserved: [u64; 6],
}

/// `fl_stats` is ABI: 54 64-bit words. New counters take words from
/// `reserved`, never grow the struct.
const _: () = assert!(core::mem::size_of::<fl_stats>() == 54 * 8);

fn add_core(t: &mut fl_stats, s: &CoreStats) {
    t.cores += 1;
    t.loops += s.loops;
    for (a, b) in t.states.iter_mut().zip(s.states.iter()) {
        *a += b;
    }
    let i = &s.iface;
    t.rx_frames += i.rx_frames;
    t.rx_bytes += i.rx_bytes;
    t.tx_frames += i.tx_frames;
    t.tx_bytes += i.tx_bytes;
    t.rx_malformed += i.drops_total();
    t.rx_not_for_us += i.not_for_us;
    t.tx_dropped += i.tx_dropped;
    t.arp_requests_sent += i.arp_requests_sent;
    t.arp_replies_sent += i.arp_replies_sent;
    t.icmp_echo_replies += i.icmp_echo_replies;
    t.misdirected += i.misdirected;
    t.rx_coalesced += i.coalesced;
    let c = &s.tcp;
    t.segments_in += c.segments_in;
    t.segments_out += c.segments_out;
    t.no_socket += c.no_socket;
    t.rst_sent += c.rst_sent;
    t.syn_queue_overflow += c.syn_queue_overflow;
    t.accept_queue_overflow += c.accept_queue_overflow;
    t.connections_opened += c.connections_opened;
    t.connections_accepted += c.connections_accepted;
    t.connections_reset += c.connections_reset;
    t.tx_backpressure += c.tx_backpressure;
    t.time_wait_records += c.time_wait_records;
    t.ports_exhausted += c.ports_exhausted;
    t.mailbox_in += s.mailbox_in;
    t.mailbox_dropped += s.mailbox_dropped;
    let d = &s.device;
    t.dev_rx_frames += d.rx_frames;
    t.dev_rx_bytes += d.rx_bytes;
    t.dev_tx_frames += d.tx_frames;
    t.dev_tx_bytes += d.tx_bytes;
    t.dev_rx_dropped += d.rx_dropped;
    t.dev_rx_fill_ring_empty += d.rx_fill_ring_empty;
    t.dev_tx_dropped += d.tx_dropped;
    t.dev_tx_kick_retries += d.tx_kick_retries;
    t.dev_tx_kick_errors += d.tx_kick_errors;
}

/// Fills `stats` with the sum over every core. Works before, during (from
/// any thread, a loop callback included) and after `fl_run`. Returns 0, or
/// -1 with EINVAL/EBADF (`rt`), EFAULT (NULL `stats`).
///
/// # Safety
/// `rt` is NULL or from `fl_start`; `stats` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn fl_stats_get(rt: *mut fl_runtime, stats: *mut fl_stats) -> c_int {
    ffi_boundary!(-1, {
        let rt = runtime_ref(rt)?;
        if stats.is_null() {
            return Err(libc::EFAULT);
        }
        let mut t = fl_stats::default();
        for s in rt.inner.stats() {
            add_core(&mut t, &s);
        }
        // SAFETY: valid for writes (contract); may be unaligned.
        unsafe { ptr::write_unaligned(stats, t) };
        Ok(0)
    })
}

/// Like `fl_stats_get` for one core (0..cores-1); EINVAL for another core.
///
/// # Safety
/// As `fl_stats_get`.
#[no_mangle]
pub unsafe extern "C" fn fl_stats_get_core(
    rt: *mut fl_runtime,
    core: c_int,
    stats: *mut fl_stats,
) -> c_int {
    ffi_boundary!(-1, {
        let rt = runtime_ref(rt)?;
        if stats.is_null() {
            return Err(libc::EFAULT);
        }
        let all = rt.inner.stats();
        let s = usize::try_from(core)
            .ok()
            .and_then(|c| all.get(c))
            .ok_or(libc::EINVAL)?;
        let mut t = fl_stats::default();
        add_core(&mut t, s);
        // SAFETY: valid for writes (contract); may be unaligned.
        unsafe { ptr::write_unaligned(stats, t) };
        Ok(0)
    })
}

/// The state's name as netstat prints it ("ESTABLISHED", "TIME_WAIT", ...),
/// a static string; NULL with errno EINVAL outside 0..FL_TCP_STATE_COUNT-1.
#[no_mangle]
pub extern "C" fn fl_tcp_state_name(state: c_int) -> *const c_char {
    const NAMES: [&CStr; FL_TCP_STATE_COUNT] = [
        c"CLOSED",
        c"LISTEN",
        c"SYN_SENT",
        c"SYN_RECV",
        c"ESTABLISHED",
        c"FIN_WAIT1",
        c"FIN_WAIT2",
        c"CLOSE_WAIT",
        c"CLOSING",
        c"LAST_ACK",
        c"TIME_WAIT",
    ];
    ffi_boundary!(ptr::null(), {
        let i = usize::try_from(state).map_err(|_| libc::EINVAL)?;
        let name = NAMES.get(i).ok_or(libc::EINVAL)?;
        debug_assert_eq!(name.to_str().ok(), State::from_index(i).map(State::name));
        Ok(name.as_ptr())
    })
}

#[cfg(test)]
mod stats_tests {
    use super::*;
    use crate::phy::DeviceCounters;

    #[test]
    fn add_core_sums_device_counters_into_their_fields() {
        let mut s = CoreStats {
            device: DeviceCounters::numbered(),
            ..CoreStats::default()
        };
        s.iface.coalesced = 5;
        let mut t = fl_stats::default();
        add_core(&mut t, &s);
        add_core(&mut t, &s);
        assert_eq!(t.cores, 2);
        assert_eq!(
            [
                t.dev_rx_frames,
                t.dev_rx_bytes,
                t.dev_tx_frames,
                t.dev_tx_bytes,
                t.dev_rx_dropped,
                t.dev_rx_fill_ring_empty,
                t.dev_tx_dropped,
                t.dev_tx_kick_retries,
                t.dev_tx_kick_errors,
            ],
            [2, 4, 6, 8, 10, 12, 14, 16, 18]
        );
        assert_eq!(t.rx_coalesced, 10);
        assert_eq!(t.reserved, [0; 6]);
    }
}
