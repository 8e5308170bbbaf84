//! Kit for the kernel-interop tests: throwaway topologies (a tap device or
//! a veth pair for AF_XDP, each with the kernel peer in its own network
//! namespace), flowlane run in-process on the per-core runtime or as the
//! built `flowlane` binary, and kernel-side helpers.
//!
//! Every name starts with `fl` and is unique per process and instance;
//! addresses are in 10.77.0.0/16; guards remove everything on drop, also
//! when an assertion fails. Loops are bounded in count and time.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use flowlane::api::StackConfig;
use flowlane::apps::{self, AppKind, Published};
use flowlane::phy::sys::{
    is_root, netns, NetNs, TapDevice, VethConfig, VethPair, XdpDevice, XdpOptions,
};
use flowlane::phy::Device;
use flowlane::runtime::{
    self, CoreContext, CoreSetup, CoreStats, IdlePolicy, Runtime, RuntimeConfig,
};
use flowlane::shard::rss::{Rss, MICROSOFT_KEY};
use flowlane::tcp::State;
use flowlane::time::Duration;
use flowlane::wire::EthernetAddress;

/// True if the test may run; prints the skip otherwise (and fails it under
/// CI=true: CI runs as root, so a skip there means something is broken).
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root, and CI=true forbids skipping");
    }
    eprintln!("{test}: skipped: needs root");
    false
}

/// True if `tool` runs; panics naming the package otherwise (the test
/// script installs them; a missing one is a setup error, not a skip).
pub fn require_tool(tool: &str, package: &str) {
    let ok = Command::new(tool)
        .arg(if tool == "nft" { "--version" } else { "-V" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "`{tool}` not found: install the Debian package {package} (scripts/test.sh does)"
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dev {
    Tap,
    Xdp,
}

/// flowlane's link and the kernel peer in its namespace.
///
/// - Tap: the tap device lives in the kernel namespace `kernel` (its
///   kernel side has `kernel_ip`); flowlane holds the device's fds.
/// - Xdp: a veth pair, flowlane's end in namespace `local` (AF_XDP,
///   generic attach), the kernel's end with `kernel_ip` in `kernel`.
pub struct Topo {
    pub dev: Dev,
    // Drop order: the veth goes before the namespaces.
    pub veth: Option<VethPair>,
    pub local: Option<NetNs>,
    pub kernel: NetNs,
    /// The interface flowlane uses (tap name or veth local end).
    pub ifname: String,
    /// The kernel's interface (tap name or veth peer end).
    pub kernel_if: String,
    pub kernel_ip: Ipv4Addr,
    pub fl_ip: Ipv4Addr,
    tap_configured: bool,
}

impl Topo {
    pub fn new(dev: Dev) -> Topo {
        Self::with_queues(dev, 1)
    }

    pub fn with_queues(dev: Dev, queues: u32) -> Topo {
        match dev {
            Dev::Tap => {
                let kernel = NetNs::new().unwrap();
                let name = netns::unique_name('t');
                let x = netns::unique_subnet();
                Topo {
                    dev,
                    veth: None,
                    local: None,
                    kernel,
                    kernel_if: name.clone(),
                    ifname: name,
                    kernel_ip: Ipv4Addr::new(10, 77, x, 1),
                    fl_ip: Ipv4Addr::new(10, 77, x, 2),
                    tap_configured: false,
                }
            }
            Dev::Xdp => {
                let local = NetNs::new().unwrap();
                let kernel = NetNs::new().unwrap();
                let veth = VethPair::with_config(VethConfig {
                    local_ns: Some(&local),
                    peer_ns: &kernel,
                    queues,
                })
                .unwrap();
                Topo {
                    dev,
                    ifname: veth.local_name().to_string(),
                    kernel_if: veth.peer_name().to_string(),
                    kernel_ip: veth.peer_addr(),
                    fl_ip: veth.flowlane_addr(),
                    veth: Some(veth),
                    local: Some(local),
                    kernel,
                    tap_configured: false,
                }
            }
        }
    }

    /// The namespace flowlane's process (or device) lives in.
    pub fn flowlane_ns(&self) -> &NetNs {
        match self.dev {
            Dev::Tap => &self.kernel,
            Dev::Xdp => self.local.as_ref().expect("xdp has a local namespace"),
        }
    }

    /// `fl_ip:port`.
    pub fn fl(&self, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.fl_ip, port)
    }

    /// Opens flowlane's devices in-process, one per core, and its MAC.
    pub fn open_devices(&mut self, cores: usize) -> (Vec<Box<dyn Device + Send>>, EthernetAddress) {
        match self.dev {
            Dev::Tap => {
                let name = self.ifname.clone();
                let devs = self
                    .kernel
                    .run(|| TapDevice::open(&name, cores))
                    .unwrap()
                    .unwrap();
                if !self.tap_configured {
                    let cidr = format!("{}/24", self.kernel_ip);
                    self.kernel
                        .ip(&["addr", "add", &cidr, "dev", &name])
                        .unwrap();
                    self.kernel.ip(&["link", "set", &name, "up"]).unwrap();
                    self.tap_configured = true;
                }
                let mac = devs[0].mac();
                (
                    devs.into_iter()
                        .map(|d| Box::new(d) as Box<dyn Device + Send>)
                        .collect(),
                    mac,
                )
            }
            Dev::Xdp => {
                let name = self.ifname.clone();
                let ip = self.fl_ip;
                let devs: Vec<XdpDevice> = self
                    .flowlane_ns()
                    .run(|| {
                        (0..cores as u32)
                            .map(|q| XdpDevice::open(&name, q, ip, XdpOptions::default()))
                            .collect::<std::io::Result<Vec<_>>>()
                    })
                    .unwrap()
                    .unwrap();
                let mac = devs[0].mac();
                (
                    devs.into_iter()
                        .map(|d| Box::new(d) as Box<dyn Device + Send>)
                        .collect(),
                    mac,
                )
            }
        }
    }

    /// Arguments for `flowlane serve` on this topology.
    pub fn serve_args(&self) -> Vec<String> {
        let mut a = vec![
            "serve".to_string(),
            "--device".into(),
            match self.dev {
                Dev::Tap => "tap".into(),
                Dev::Xdp => "xdp".into(),
            },
            "--ifname".into(),
            self.ifname.clone(),
            "--ip".into(),
            format!("{}/24", self.fl_ip),
        ];
        if self.dev == Dev::Tap {
            a.push("--tap-host-ip".into());
            a.push(format!("{}/24", self.kernel_ip));
        }
        a
    }

    /// Runs `f` on a thread inside the kernel's namespace.
    pub fn in_kernel<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.kernel.run(f).unwrap()
    }

    /// A kernel TCP connection from the kernel namespace to flowlane.
    pub fn connect(&self, port: u16) -> std::io::Result<TcpStream> {
        let addr = self.fl(port);
        self.in_kernel(|| TcpStream::connect_timeout(&addr.into(), StdDuration::from_secs(5)))
    }

    /// `ss -tan` in the kernel namespace.
    pub fn ss(&self) -> String {
        let out = self.kernel.exec("ss", &["-tan"]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Drops a random 5 % of the kernel namespace's TCP packets, in and out
    /// (nftables; the kernel has no netem here).
    pub fn add_tcp_loss(&self, percent: u32) {
        require_tool("nft", "nftables");
        let rules = format!(
            "table inet fl_loss {{\n\
               chain in {{ type filter hook input priority 0; meta l4proto tcp numgen random mod 100 < {percent} counter drop; }}\n\
               chain out {{ type filter hook output priority 0; meta l4proto tcp numgen random mod 100 < {percent} counter drop; }}\n\
             }}\n"
        );
        let mut child = self
            .kernel
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft rules failed");
    }

    /// The nftables drop counters (packets) of the loss rules.
    pub fn loss_counters(&self) -> String {
        let out = self
            .kernel
            .exec("nft", &["list", "table", "inet", "fl_loss"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("counter"))
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

// ----- flowlane in-process -------------------------------------------------

/// A runtime with one app per core, stopped and joined on drop.
pub struct InProc {
    pub rt: Option<Runtime>,
}

impl InProc {
    pub fn start(
        topo: &mut Topo,
        cores: usize,
        mut app: impl FnMut(usize) -> Box<dyn FnMut(&mut CoreContext<'_>) + Send>,
    ) -> InProc {
        let (devs, mac) = topo.open_devices(cores);
        let setups = devs
            .into_iter()
            .enumerate()
            .map(|(i, device)| CoreSetup {
                device,
                stack: StackConfig::new(mac, topo.fl_ip, 24),
                app: app(i),
            })
            .collect::<Vec<_>>();
        let rt = Runtime::start(
            RuntimeConfig {
                idle: IdlePolicy::Backoff {
                    max_sleep: Duration::from_millis(1),
                },
                rss: (cores > 1).then(|| Rss::new(MICROSOFT_KEY, cores)),
                ..RuntimeConfig::default()
            },
            setups,
        )
        .unwrap();
        InProc { rt: Some(rt) }
    }

    /// A server app of `kind` on `port`, with its published counters.
    pub fn server(topo: &mut Topo, kind: AppKind, port: u16) -> (InProc, Arc<Mutex<Published>>) {
        let out = Arc::new(Mutex::new(Published::default()));
        let o = out.clone();
        let inproc = InProc::start(topo, 1, move |_| {
            apps::runtime_app(
                kind.server(port),
                Arc::new(AtomicBool::new(false)),
                o.clone(),
            )
        });
        (inproc, out)
    }

    pub fn stats(&self) -> Vec<CoreStats> {
        self.rt.as_ref().unwrap().stats()
    }

    pub fn total(&self) -> CoreStats {
        runtime::total(&self.stats())
    }

    /// flowlane's sockets in `state`, all cores.
    pub fn count(&self, state: State) -> u64 {
        self.total().states[state as usize]
    }

    /// Waits (bounded) until `pred` holds on the totals; returns them.
    pub fn wait_for(&self, limit: StdDuration, pred: impl Fn(&CoreStats) -> bool) -> CoreStats {
        let t0 = StdInstant::now();
        loop {
            let t = self.total();
            if pred(&t) || t0.elapsed() > limit {
                return t;
            }
            std::thread::sleep(StdDuration::from_millis(10));
        }
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            let _ = rt.join();
        }
    }
}

// ----- flowlane as a process -------------------------------------------------

/// The `flowlane` binary, running; killed on drop if still running.
pub struct Proc {
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

pub fn flowlane_bin() -> &'static str {
    env!("CARGO_BIN_EXE_flowlane")
}

impl Proc {
    /// Starts `flowlane args` inside `ns` (or here with `None`).
    pub fn spawn(ns: Option<&NetNs>, args: &[String]) -> Proc {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = ns.command(flowlane_bin());
                c.args(args);
                c
            }
            None => {
                let mut c = Command::new(flowlane_bin());
                c.args(args).stdin(Stdio::null());
                c
            }
        };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flowlane");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let out = child.stdout.take().unwrap();
        let s = stdout.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                s.lock().unwrap().push_str(&format!("{line}\n"));
            }
        }));
        let err = child.stderr.take().unwrap();
        let s = stderr.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                s.lock().unwrap().push_str(&format!("{line}\n"));
            }
        }));
        Proc {
            child: Some(child),
            stdout,
            stderr,
            readers,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (bounded) until stdout contains `what`; panics with the
    /// output otherwise (or if the process exits first).
    pub fn wait_for_output(&mut self, what: &str, limit: StdDuration) {
        let t0 = StdInstant::now();
        while t0.elapsed() < limit {
            if self.stdout().contains(what) {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                std::thread::sleep(StdDuration::from_millis(50));
                panic!(
                    "flowlane exited ({st}) before printing {what:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
        panic!(
            "flowlane did not print {what:?} within {limit:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` (a name like TERM or INT) with the shell's `kill`.
    pub fn signal(&self, signal: &str) {
        let st = Command::new("bash")
            .args(["-c", &format!("kill -{signal} {}", self.pid())])
            .status()
            .unwrap();
        assert!(st.success(), "kill -{signal} failed");
    }

    /// Waits (bounded) for the exit; returns status, stdout, stderr.
    pub fn wait(mut self, limit: StdDuration) -> (ExitStatus, String, String) {
        let mut child = self.child.take().unwrap();
        let t0 = StdInstant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "flowlane did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(StdDuration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status, self.stdout(), self.stderr())
    }

    /// SIGTERM, then the exit (which must be 0).
    pub fn stop(self) -> String {
        self.signal("TERM");
        let (st, out, err) = self.wait(StdDuration::from_secs(20));
        assert!(
            st.success(),
            "flowlane exited with {st}\nstdout:\n{out}\nstderr:\n{err}"
        );
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the binary to completion (bounded) with `args`.
pub fn run_flowlane(
    ns: Option<&NetNs>,
    args: &[&str],
    limit: StdDuration,
) -> (ExitStatus, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    Proc::spawn(ns, &args).wait(limit)
}

/// `flowlane serve` on `topo` with `extra` arguments, started (it printed
/// its banner).
pub fn serve(topo: &Topo, extra: &[&str]) -> Proc {
    let mut args = topo.serve_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut p = Proc::spawn(Some(topo.flowlane_ns()), &args);
    p.wait_for_output("flowlane: serving", StdDuration::from_secs(20));
    p
}

// ----- kernel-side peers and checks ----------------------------------------

/// A kernel echo server in `ns` on `addr`: one thread per connection,
/// echoing until the peer's end of stream, then closing. Stops on drop.
pub struct KernelEcho {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KernelEcho {
    pub fn start(ns: &NetNs, addr: SocketAddrV4) -> KernelEcho {
        let listener = ns.run(|| TcpListener::bind(addr)).unwrap().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_read_timeout(Some(StdDuration::from_secs(60)));
                            let mut conn = conn;
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                match conn.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        if conn.write_all(&buf[..n]).is_err() {
                                            break;
                                        }
                                    }
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(StdDuration::from_micros(200)),
                }
            }
        });
        KernelEcho {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for KernelEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The seeded pattern the tests send, `len` bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    apps::client::fill_pattern(seed, 0, &mut v);
    v
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// Sends `data` over `stream` from one thread while reading the echo on
/// another; returns what came back (to the end of the stream) and the time.
pub fn echo_through(stream: TcpStream, data: &[u8], limit: StdDuration) -> (Vec<u8>, StdDuration) {
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.set_write_timeout(Some(limit)).unwrap();
    let t = StdInstant::now();
    let mut w = stream.try_clone().unwrap();
    let mut r = stream;
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            w.write_all(data).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut got = Vec::with_capacity(data.len());
        let res = r.read_to_end(&mut got);
        writer.join().unwrap();
        res.unwrap_or_else(|e| panic!("reading the echo after {} bytes: {e}", got.len()));
        (got, t.elapsed())
    })
}

/// Reads one HTTP response (head and `Content-Length` body) from `r`.
pub fn read_http(r: &mut impl Read) -> std::io::Result<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut b)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("EOF after {:?}", String::from_utf8_lossy(&head)),
            ));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((head, body))
}

/// Lines of `ss -tan` output whose peer or local address is `addr`.
pub fn ss_lines(ss: &str, addr: SocketAddrV4) -> Vec<String> {
    let a = addr.to_string();
    ss.lines()
        .filter(|l| l.split_whitespace().any(|w| w == a))
        .map(|l| l.to_string())
        .collect()
}

/// The per-state count line flowlane printed last (`  states: ...`).
pub fn last_states_line(out: &str) -> String {
    out.lines()
        .rfind(|l| l.trim_start().starts_with("states:"))
        .unwrap_or("")
        .to_string()
}
