//! The C runtime's lifecycle on top of [`crate::runtime`]: `fl_start`
//! opens the devices (so a bad interface fails there, with its cause),
//! `fl_run` starts one loop per core and returns when they stop, and the
//! statistics stay readable after the run.
//!
//! Owns: device setup from [`Settings`], the per-core stack configurations,
//! and the stop flag `fl_stop` sets (an atomic store, so a signal handler may
//! call it). Never: touches C pointers (that is `super`).

use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::config::{DeviceKind, Settings};
use super::device::{ArpShare, CoreDevice};
use crate::api::StackConfig;
use crate::phy::sys::{netns, TapDevice, XdpDevice};
use crate::phy::{Device, PcapWriter};
use crate::runtime::{CoreContext, CoreSetup, CoreStats, Runtime, RuntimeConfig};
use crate::shard::rss::{Rss, MICROSOFT_KEY};

/// A runtime between `fl_start` and `fl_free`.
pub struct FlRuntime {
    /// Set by `fl_stop` (from anywhere) and by a loop that returns non-zero.
    pub stop: Arc<AtomicBool>,
    cores: usize,
    /// Devices and stack settings until `fl_run` takes them (once).
    prepared: Mutex<Option<Prepared>>,
    /// The running per-core loops, while `fl_run` runs.
    live: Mutex<Option<Runtime>>,
    /// The cores' statistics when the run ended.
    last: Mutex<Option<Vec<CoreStats>>>,
    pub running: AtomicBool,
}

struct Prepared {
    devices: Vec<CoreDevice>,
    stacks: Vec<StackConfig>,
    config: RuntimeConfig,
}

/// Why a call failed: the errno and a one-line message.
pub type Failure = (i32, String);

fn failure(e: io::Error) -> Failure {
    let errno = crate::phy::sys::errno(&e).unwrap_or(match e.kind() {
        io::ErrorKind::NotFound => libc::ENODEV,
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::PermissionDenied => libc::EPERM,
        io::ErrorKind::AlreadyExists => libc::EEXIST,
        io::ErrorKind::AddrInUse => libc::EADDRINUSE,
        io::ErrorKind::OutOfMemory => libc::ENOMEM,
        _ => libc::EIO,
    });
    (errno, e.to_string())
}

/// 24 bytes from the kernel's random source: the ISN secret and the demux
/// hash seed must not be guessable (RFC 6528 §3).
fn secrets() -> ([u8; 16], u64) {
    let mut b = [0u8; 24];
    let ok = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        // No /dev/urandom (a chroot): the clock and the pid, which is
        // weak but unpredictable enough to keep ISNs from repeating.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b[..16].copy_from_slice(&t.to_le_bytes());
        b[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&b[..16]);
    let seed = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
    (key, seed)
}

fn pcap_path(base: &std::path::Path, core: usize) -> PathBuf {
    if core == 0 {
        base.to_path_buf()
    } else {
        let mut s = base.as_os_str().to_owned();
        s.push(format!(".{core}"));
        PathBuf::from(s)
    }
}

impl FlRuntime {
    /// Opens the devices `settings` name and prepares one stack per core.
    pub fn start(settings: &Settings) -> Result<FlRuntime, Failure> {
        settings.validate().map_err(|m| (libc::EINVAL, m))?;
        let kind = settings.device.expect("validated");
        let ifname = settings.ifname.clone().expect("validated");
        let (ip, prefix) = settings.ip.expect("validated");
        let cores = settings.cores;
        let (devices, mac): (Vec<Box<dyn Device + Send>>, _) = match kind {
            DeviceKind::Tap => {
                let devs = TapDevice::open(&ifname, cores).map_err(failure)?;
                let mac = settings.mac.unwrap_or_else(|| devs[0].mac());
                if let Some((host, p)) = settings.tap_host_ip {
                    let cidr = format!("{host}/{p}");
                    netns::ip(&["addr", "add", &cidr, "dev", &ifname]).map_err(failure)?;
                    netns::ip(&["link", "set", &ifname, "up"]).map_err(failure)?;
                }
                let devs = devs
                    .into_iter()
                    .map(|d| Box::new(d) as Box<dyn Device + Send>)
                    .collect();
                (devs, mac)
            }
            DeviceKind::Xdp => {
                let mut devs = Vec::with_capacity(cores);
                for q in 0..cores {
                    let d =
                        XdpDevice::open(&ifname, q as u32, ip, settings.xdp).map_err(failure)?;
                    devs.push(d);
                }
                let mac = devs[0].mac();
                let devs = devs
                    .into_iter()
                    .map(|d| Box::new(d) as Box<dyn Device + Send>)
                    .collect();
                (devs, mac)
            }
        };
        let mtu = devices
            .iter()
            .map(|d| d.capabilities().mtu)
            .min()
            .unwrap_or(1500);
        let (isn_key, hash_seed) = secrets();
        let mut stack = StackConfig::new(mac, ip, prefix);
        stack.iface.gateway = settings.gateway;
        stack.iface.mtu = stack.iface.mtu.min(mtu);
        stack.iface.verify_checksums = settings.verify_checksums;
        stack.iface.coalesce = settings.coalesce;
        stack.endpoint = settings.endpoint.clone();
        stack.endpoint.isn_key = isn_key;
        stack.endpoint.hash_seed = hash_seed;
        let tcp_mss = stack.iface.mtu.saturating_sub(40).min(u16::MAX as usize) as u16;
        stack.endpoint.tcp.mss = stack.endpoint.tcp.mss.min(tcp_mss);
        let stacks = (0..cores)
            .map(|core| {
                let mut s = stack.clone();
                s.endpoint.hash_seed = hash_seed.wrapping_add(core as u64);
                s
            })
            .collect();
        let share = (cores > 1).then(|| ArpShare::new(cores));
        let mut wrapped = Vec::with_capacity(cores);
        for (core, dev) in devices.into_iter().enumerate() {
            let pcap = match &settings.pcap {
                Some(base) => {
                    let path = pcap_path(base, core);
                    let file = File::create(&path).map_err(|e| {
                        (
                            e.raw_os_error().unwrap_or(libc::EIO),
                            format!("pcap {}: {e}", path.display()),
                        )
                    })?;
                    Some(PcapWriter::new(BufWriter::new(file)).map_err(failure)?)
                }
                None => None,
            };
            wrapped.push(CoreDevice::new(dev, core, share.clone(), pcap));
        }
        let config = RuntimeConfig {
            cpus: settings.cpus.clone(),
            idle: settings.idle,
            stats_interval: settings.stats_interval,
            rss: (cores > 1).then(|| Rss::new(MICROSOFT_KEY, cores)),
            ..RuntimeConfig::default()
        };
        Ok(FlRuntime {
            stop: Arc::new(AtomicBool::new(false)),
            cores,
            prepared: Mutex::new(Some(Prepared {
                devices: wrapped,
                stacks,
                config,
            })),
            live: Mutex::new(None),
            last: Mutex::new(None),
            running: AtomicBool::new(false),
        })
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Runs one loop per core; `app(core)` makes each core's callback.
    /// Returns when every core has stopped.
    pub fn run<A>(&self, mut app: impl FnMut(usize, Arc<AtomicUsize>) -> A) -> Result<(), Failure>
    where
        A: FnMut(&mut CoreContext<'_>) + Send + 'static,
    {
        let prepared = self
            .prepared
            .lock()
            .map_err(|_| (libc::EIO, "runtime state poisoned".to_string()))?
            .take()
            .ok_or((
                libc::EINVAL,
                "fl_run: this runtime has already run (start a new one)".to_string(),
            ))?;
        let exited = Arc::new(AtomicUsize::new(0));
        let cores = prepared.devices.len();
        let setups: Vec<CoreSetup> = prepared
            .devices
            .into_iter()
            .zip(prepared.stacks)
            .enumerate()
            .map(|(core, (device, stack))| CoreSetup {
                device: Box::new(device),
                stack,
                app: Box::new(app(core, exited.clone())),
            })
            .collect();
        let runtime = Runtime::start(prepared.config, setups).map_err(failure)?;
        if let Ok(mut live) = self.live.lock() {
            *live = Some(runtime);
        }
        // Wait for a stop request, or a core that ended on its own (a
        // panic in the stack).
        while !self.stop.load(Ordering::Acquire) && exited.load(Ordering::Acquire) == 0 {
            let stopped = self
                .live
                .lock()
                .map(|l| l.as_ref().is_none_or(Runtime::is_stopped))
                .unwrap_or(true);
            if stopped {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.stop.store(true, Ordering::Release);
        if let Ok(live) = self.live.lock() {
            if let Some(r) = live.as_ref() {
                r.stop();
            }
        }
        // Each core publishes its statistics on its last iteration, then
        // drops its callback: once all have, the numbers are final.
        while exited.load(Ordering::Acquire) < cores {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let runtime = self.live.lock().ok().and_then(|mut l| l.take());
        let Some(runtime) = runtime else {
            return Err((libc::EIO, "runtime state lost".to_string()));
        };
        if let Ok(mut last) = self.last.lock() {
            *last = Some(runtime.stats());
        }
        runtime.join().map_err(|e| (libc::EIO, e.to_string()))
    }

    /// The latest statistics of each core (zeros before the run).
    pub fn stats(&self) -> Vec<CoreStats> {
        if let Ok(live) = self.live.lock() {
            if let Some(r) = live.as_ref() {
                return r.stats();
            }
        }
        if let Ok(last) = self.last.lock() {
            if let Some(s) = last.as_ref() {
                return s.clone();
            }
        }
        (0..self.cores)
            .map(|core| CoreStats {
                core,
                ..CoreStats::default()
            })
            .collect()
    }
}
