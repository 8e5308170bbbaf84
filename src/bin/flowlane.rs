//! The `flowlane` command.
//!
//! - `flowlane serve`: an echo or HTTP server on AF_XDP or tap, one core
//!   per device queue, until SIGINT/SIGTERM.
//! - `flowlane demo`: the README's main job — flowlane's HTTP server beside
//!   the Linux stack's, in throwaway network namespaces, driven by kernel
//!   clients, compared side by side.
//!
//! Bad arguments exit with code 2 (clap's convention); a failure to set up
//! (no such interface, no permission, a queue that cannot be bound) prints
//! one line naming the cause and exits 1, leaving nothing behind.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use clap::{Parser, Subcommand, ValueEnum};

use flowlane::api::StackConfig;
use flowlane::apps::{self, AppCounters, AppKind, Published};
use flowlane::phy::pcap::PcapWriter;
use flowlane::phy::sys::{netns, AttachMode, TapDevice, XdpDevice, XdpOptions};
use flowlane::phy::{Device, DeviceCapabilities, DeviceCounters, FrameBatch};
use flowlane::runtime::{self, CoreSetup, CoreStats, IdlePolicy, Runtime, RuntimeConfig};
use flowlane::shard::rss::{Rss, MICROSOFT_KEY};
use flowlane::tcp::State;
use flowlane::time::{Duration, Instant};
use flowlane::wire::EthernetAddress;

#[path = "flowlane/demo.rs"]
mod demo;

#[derive(Parser, Debug)]
#[command(
    name = "flowlane",
    version,
    about = "A userspace per-core TCP/IP stack: servers on AF_XDP or tap, and a demo beside the Linux stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs an HTTP or echo server on an AF_XDP interface or a new tap device.
    Serve(ServeArgs),
    /// Compares flowlane's HTTP server with the Linux stack's on a veth pair
    /// between two throwaway network namespaces (needs root).
    Demo(demo::DemoArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DeviceKind {
    /// AF_XDP on an existing interface (one socket per queue and core).
    Xdp,
    /// A new tap device (multi-queue with several cores).
    Tap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AppArg {
    Http,
    Echo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AttachArg {
    /// Generic (SKB) XDP: works on every interface.
    Generic,
    /// Native (driver) XDP: faster where the driver supports it.
    Native,
}

/// An IPv4 address with a prefix length, `ADDR/PREFIX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDR/PREFIX (for example 10.77.0.2/24)"))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| format!("prefix {p:?} is not a number from 1 to 32"))?;
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
        return Err(format!("{addr} cannot be an interface address"));
    }
    Ok(Cidr { addr, prefix })
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v > 0.0 && v <= 86_400.0) {
        return Err(format!("{s} is not within (0, 86400] seconds"));
    }
    Ok(v)
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Which device carries the frames.
    #[arg(long, value_enum)]
    device: DeviceKind,
    /// xdp: an existing interface; tap: the tap device to create.
    #[arg(long)]
    ifname: String,
    /// flowlane's address and prefix (not configured on the kernel side).
    #[arg(long, value_name = "ADDR/PREFIX", value_parser = parse_cidr)]
    ip: Cidr,
    /// Next hop for destinations outside the prefix.
    #[arg(long, value_name = "ADDR")]
    gateway: Option<Ipv4Addr>,
    /// TCP port to listen on.
    #[arg(long, default_value_t = 8080, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// The server to run.
    #[arg(long, value_enum, default_value_t = AppArg::Http)]
    app: AppArg,
    /// Cores (one loop thread and one device queue each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    cores: u16,
    /// Record every frame to this libpcap file.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Print statistics every SECS seconds (and always at exit).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    stats_interval: Option<f64>,
    /// tap: give the kernel side of the tap this address and bring it up.
    #[arg(long, value_name = "ADDR/PREFIX", value_parser = parse_cidr)]
    tap_host_ip: Option<Cidr>,
    /// xdp: how the XDP program is attached.
    #[arg(long, value_enum, default_value_t = AttachArg::Generic)]
    xdp_attach: AttachArg,
    /// Spin when idle (lowest latency, one CPU per core at 100 %) instead
    /// of backing off to short sleeps.
    #[arg(long)]
    busy_poll: bool,
    /// Pin core i's thread to CPU i.
    #[arg(long)]
    pin: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line naming the cause.
            let msg = e.to_string().replace('\n', " ");
            eprintln!("flowlane: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Makes a usage error (exit code 2) the way clap reports its own.
fn usage_error(msg: impl std::fmt::Display) -> ! {
    use clap::CommandFactory;
    Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, msg)
        .exit()
}

/// SIGINT and SIGTERM set the returned flag (and nothing else).
pub fn termination_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

/// Records every frame a device moves into a libpcap file shared by all
/// cores (record timestamps are wall-clock times).
pub struct Capture {
    inner: Box<dyn Device + Send>,
    writer: Arc<Mutex<PcapWriter<BufWriter<File>>>>,
    epoch_micros: u64,
}

impl Capture {
    fn record<'a>(&self, now: Instant, frames: impl Iterator<Item = &'a [u8]>) {
        if let Ok(mut w) = self.writer.lock() {
            let ts = Instant::from_micros(self.epoch_micros + now.total_micros());
            for f in frames {
                let _ = w.write_frame(ts, f);
            }
        }
    }
}

impl Device for Capture {
    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
    fn receive(&mut self, now: Instant, batch: &mut FrameBatch, max: usize) -> usize {
        let before = batch.len();
        let n = self.inner.receive(now, batch, max);
        if batch.len() > before {
            self.record(now, (before..batch.len()).map(|i| batch.get(i)));
        }
        n
    }
    fn transmit(&mut self, now: Instant, batch: &mut FrameBatch) -> usize {
        if !batch.is_empty() {
            self.record(now, batch.iter());
        }
        self.inner.transmit(now, batch)
    }
    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }

    fn counters(&self) -> DeviceCounters {
        self.inner.counters()
    }
}

/// The devices of `serve`, one per core, with a description for the log.
struct Devices {
    devices: Vec<Box<dyn Device + Send>>,
    mac: EthernetAddress,
    mtu: usize,
    what: String,
}

fn open_xdp(args: &ServeArgs) -> io::Result<Devices> {
    let opts = XdpOptions {
        attach: match args.xdp_attach {
            AttachArg::Generic => AttachMode::Generic,
            AttachArg::Native => AttachMode::Native,
        },
        ..XdpOptions::default()
    };
    let mut devs = Vec::new();
    for q in 0..args.cores as u32 {
        // Devices opened so far are dropped on error: the last one takes
        // the XDP program with it.
        let d = XdpDevice::open(&args.ifname, q, args.ip.addr, opts).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("AF_XDP on {} queue {q}: {e}", args.ifname),
            )
        })?;
        devs.push(d);
    }
    let first = &devs[0];
    let what = format!(
        "AF_XDP on {} queues 0..{} ({} mode, {} XDP attach)",
        args.ifname,
        args.cores,
        first.mode(),
        first.attach_mode().name()
    );
    let (mac, mtu) = (first.mac(), first.capabilities().mtu);
    Ok(Devices {
        devices: devs
            .into_iter()
            .map(|d| Box::new(d) as Box<dyn Device + Send>)
            .collect(),
        mac,
        mtu,
        what,
    })
}

fn open_tap(args: &ServeArgs) -> io::Result<Devices> {
    let devs = TapDevice::open(&args.ifname, args.cores as usize)?;
    // From here on, an error drops `devs`, which removes the tap.
    if let Some(host) = args.tap_host_ip {
        let cidr = host.to_string();
        netns::ip(&["addr", "add", &cidr, "dev", devs[0].ifname()])?;
        netns::ip(&["link", "set", devs[0].ifname(), "up"])?;
    }
    let what = format!(
        "tap {} ({} queue{}{})",
        devs[0].ifname(),
        args.cores,
        if args.cores > 1 { "s" } else { "" },
        match args.tap_host_ip {
            Some(h) => format!(", kernel side {h}"),
            None => String::new(),
        }
    );
    let (mac, mtu) = (devs[0].mac(), devs[0].capabilities().mtu);
    Ok(Devices {
        devices: devs
            .into_iter()
            .map(|d| Box::new(d) as Box<dyn Device + Send>)
            .collect(),
        mac,
        mtu,
        what,
    })
}

fn serve(args: ServeArgs) -> io::Result<ExitCode> {
    if args.tap_host_ip.is_some() && args.device != DeviceKind::Tap {
        usage_error("--tap-host-ip only applies to --device tap");
    }
    if let Some(h) = args.tap_host_ip {
        if h.addr == args.ip.addr {
            usage_error("--tap-host-ip must differ from --ip");
        }
    }
    if args.xdp_attach != AttachArg::Generic && args.device != DeviceKind::Xdp {
        usage_error("--xdp-attach only applies to --device xdp");
    }
    let term = termination_flag()?;
    let devices = match args.device {
        DeviceKind::Xdp => open_xdp(&args)?,
        DeviceKind::Tap => open_tap(&args)?,
    };
    let app = match args.app {
        AppArg::Http => AppKind::Http,
        AppArg::Echo => AppKind::Echo,
    };
    let writer = match &args.pcap {
        Some(path) => {
            let f = File::create(path)
                .map_err(|e| io::Error::new(e.kind(), format!("--pcap {}: {e}", path.display())))?;
            Some(Arc::new(Mutex::new(PcapWriter::new(BufWriter::new(f))?)))
        }
        None => None,
    };
    let epoch_micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);

    let mut stack = StackConfig::new(devices.mac, args.ip.addr, args.ip.prefix);
    stack.iface.gateway = args.gateway;
    if devices.mtu < stack.iface.mtu {
        stack.iface.mtu = devices.mtu;
        stack.endpoint.tcp.mss = (devices.mtu.saturating_sub(40)).max(536) as u16;
    }
    let drain = Arc::new(AtomicBool::new(false));
    let mut published = Vec::new();
    let mut cores = Vec::new();
    for dev in devices.devices {
        let device: Box<dyn Device + Send> = match &writer {
            Some(w) => Box::new(Capture {
                inner: dev,
                writer: w.clone(),
                epoch_micros,
            }),
            None => dev,
        };
        let out = Arc::new(Mutex::new(Published::default()));
        published.push(out.clone());
        cores.push(CoreSetup {
            device,
            stack: stack.clone(),
            app: apps::runtime_app(app.server(args.port), drain.clone(), out),
        });
    }
    let n = cores.len();
    let config = RuntimeConfig {
        cpus: if args.pin {
            (0..n).collect()
        } else {
            Vec::new()
        },
        idle: if args.busy_poll {
            IdlePolicy::BusyPoll
        } else {
            IdlePolicy::Backoff {
                max_sleep: Duration::from_millis(1),
            }
        },
        rss: (n > 1).then(|| Rss::new(MICROSOFT_KEY, n)),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(config, cores)?;
    println!(
        "flowlane: serving {} on {}:{} over {}, {} core{} (MAC {}){}",
        app.name(),
        args.ip.addr,
        args.port,
        devices.what,
        n,
        if n > 1 { "s" } else { "" },
        devices.mac,
        match &args.pcap {
            Some(p) => format!(", capturing to {}", p.display()),
            None => String::new(),
        }
    );
    let _ = io::stdout().flush();

    let start = StdInstant::now();
    let interval = args.stats_interval.map(StdDuration::from_secs_f64);
    let mut next_stats = interval.map(|i| start + i);
    let mut listen_error = None;
    while !term.load(Ordering::Relaxed) {
        std::thread::sleep(StdDuration::from_millis(20));
        if let Some(e) = published
            .iter()
            .find_map(|p| p.lock().ok().and_then(|p| p.error))
        {
            listen_error = Some(e);
            break;
        }
        if let (Some(at), Some(i)) = (next_stats, interval) {
            if StdInstant::now() >= at {
                print_stats(start, &rt.stats(), &app_counters(&published));
                next_stats = Some(at + i);
            }
        }
    }
    if let Some(e) = listen_error {
        drop(rt);
        return Err(io::Error::other(format!(
            "cannot listen on port {}: {e:?}",
            args.port
        )));
    }
    // Close every connection (FIN), give them a moment to finish, stop.
    println!("flowlane: stopping: closing connections");
    drain.store(true, Ordering::Relaxed);
    let deadline = StdInstant::now() + StdDuration::from_secs(1);
    while StdInstant::now() < deadline {
        std::thread::sleep(StdDuration::from_millis(10));
        let drained = published
            .iter()
            .all(|p| p.lock().map(|p| p.drained).unwrap_or(true));
        let t = runtime::total(&rt.stats());
        let open: u64 = State::ALL
            .iter()
            .filter(|s| !matches!(s, State::Closed | State::Listen | State::TimeWait))
            .map(|&s| t.states[s as usize])
            .sum();
        if drained && open == 0 {
            break;
        }
    }
    let stats = rt.stats();
    let counters = app_counters(&published);
    rt.join()?;
    if let Some(w) = &writer {
        if let Ok(mut w) = w.lock() {
            w.flush()?;
        }
    }
    println!("flowlane: final statistics");
    print_stats(start, &stats, &counters);
    println!("flowlane: stopped");
    Ok(ExitCode::SUCCESS)
}

fn app_counters(published: &[Arc<Mutex<Published>>]) -> Vec<AppCounters> {
    published
        .iter()
        .map(|p| p.lock().map(|p| p.counters).unwrap_or_default())
        .collect()
}

/// `LISTEN 1, ESTABLISHED 3` (states with a non-zero count), or `none`.
pub fn states_line(states: &[u64; State::COUNT]) -> String {
    let parts: Vec<String> = State::ALL
        .iter()
        .filter(|&&s| states[s as usize] > 0)
        .map(|&s| format!("{} {}", s.name(), states[s as usize]))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// The device's counters on one line (`flowlane serve` and the demo).
fn device_line(d: &flowlane::phy::DeviceCounters) -> String {
    format!(
        "rx frames {} bytes {} dropped {} (fill ring empty {}); \
         tx frames {} bytes {} dropped {} (kick retries {}, kick errors {})",
        d.rx_frames,
        d.rx_bytes,
        d.rx_dropped,
        d.rx_fill_ring_empty,
        d.tx_frames,
        d.tx_bytes,
        d.tx_dropped,
        d.tx_kick_retries,
        d.tx_kick_errors,
    )
}

fn print_stats(start: StdInstant, stats: &[CoreStats], apps: &[AppCounters]) {
    let t = runtime::total(stats);
    let mut a = AppCounters::default();
    for c in apps {
        a.add(c);
    }
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "[{:7.1} s] frames rx {} tx {}, bytes rx {} tx {}; segments in {} out {}; \
         connections accepted {} active {} failed {}; requests {} (bad {}); \
         retransmits {} (timeouts {}); rst sent {}; resets {}; not for us {}; malformed {}; \
         icmp echo replies {}; misdirected {}; coalesced {}",
        start.elapsed().as_secs_f64(),
        t.iface.rx_frames,
        t.iface.tx_frames,
        t.iface.rx_bytes,
        t.iface.tx_bytes,
        t.tcp.segments_in,
        t.tcp.segments_out,
        t.tcp.connections_accepted,
        a.active,
        a.failed,
        a.requests,
        a.bad_requests,
        a.retransmits,
        a.rtos,
        t.tcp.rst_sent,
        t.tcp.connections_reset,
        t.iface.not_for_us,
        t.iface.drops_total(),
        t.iface.icmp_echo_replies,
        t.iface.misdirected,
        t.iface.coalesced,
    );
    let _ = writeln!(out, "  device: {}", device_line(&t.device));
    let _ = writeln!(out, "  states: {}", states_line(&t.states));
    if stats.len() > 1 {
        for (s, c) in stats.iter().zip(apps) {
            let _ = writeln!(
                out,
                "  core {}: accepted {}, requests {}, rx frames {}, tx frames {}, \
                 misdirected {}, mailbox in {} dropped {}, device rx dropped {} \
                 tx dropped {}; states: {}",
                s.core,
                s.tcp.connections_accepted,
                c.requests,
                s.iface.rx_frames,
                s.iface.tx_frames,
                s.iface.misdirected,
                s.mailbox_in,
                s.mailbox_dropped,
                s.device.rx_dropped,
                s.device.tx_dropped,
                states_line(&s.states)
            );
        }
    }
    print!("{out}");
    let _ = io::stdout().flush();
}
