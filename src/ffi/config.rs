//! The key/value configuration behind `fl_config_set`: the keys are the
//! `flowlane serve` flags (`device`, `ifname`, `ip`, `gateway`, `cores`,
//! `tap_host_ip`, `pcap`) plus the stack's tunables. Keys are stable: new
//! ones are added, none is renamed or removed. `-` and `_` are the same in a
//! key (`tap-host-ip` is `tap_host_ip`).
//!
//! Owns: parsing and validating one value at a time (a bad value leaves the
//! configuration as it was), and the checks that need several keys at once
//! ([`Settings::validate`]). Never opens a device or starts anything.

use core::net::Ipv4Addr;
use std::path::PathBuf;

use crate::phy::sys::{AttachMode, XdpOptions};
use crate::runtime::IdlePolicy;
use crate::tcp::{Algorithm, EndpointConfig};
use crate::time::Duration;
use crate::wire::EthernetAddress;

/// Most cores one runtime drives: a descriptor carries its core in 6 bits.
pub(crate) const MAX_CORES: usize = 64;

/// Which OS device carries the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// AF_XDP on an existing interface, one socket per core (queue i).
    Xdp,
    /// A tap interface flowlane creates, one queue per core.
    Tap,
}

/// Everything `fl_start` needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub device: Option<DeviceKind>,
    pub ifname: Option<String>,
    /// flowlane's address and prefix length.
    pub ip: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    pub cores: usize,
    /// With `device=tap`: the kernel side's address; the tap is brought up.
    pub tap_host_ip: Option<(Ipv4Addr, u8)>,
    /// Record every frame (core 0 to this file, core i to `FILE.i`).
    pub pcap: Option<PathBuf>,
    /// flowlane's MAC on a tap (default: derived from the name).
    pub mac: Option<EthernetAddress>,
    pub endpoint: EndpointConfig,
    pub idle: IdlePolicy,
    /// CPUs to pin core i to (`cpus[i % len]`); empty: no pinning.
    pub cpus: Vec<usize>,
    pub xdp: XdpOptions,
    pub stats_interval: Duration,
    pub verify_checksums: bool,
    /// Receive coalescing (`InterfaceConfig::coalesce`, as GRO).
    pub coalesce: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            device: None,
            ifname: None,
            ip: None,
            gateway: None,
            cores: 1,
            tap_host_ip: None,
            pcap: None,
            mac: None,
            endpoint: EndpointConfig::default(),
            idle: IdlePolicy::BusyPoll,
            cpus: Vec::new(),
            xdp: XdpOptions::default(),
            stats_interval: Duration::from_millis(10),
            verify_checksums: true,
            coalesce: true,
        }
    }
}

/// Every key `fl_config_set` accepts, with the shape of its value (shown in
/// error messages and the header's documentation).
pub(crate) const KEYS: &[(&str, &str)] = &[
    ("device", "xdp|tap"),
    ("ifname", "interface name (1..15 bytes)"),
    ("ip", "ADDR/PREFIX"),
    ("gateway", "ADDR"),
    ("cores", "1..64"),
    ("tap_host_ip", "ADDR/PREFIX"),
    ("pcap", "FILE"),
    ("mac", "xx:xx:xx:xx:xx:xx"),
    ("msl_ms", "milliseconds"),
    ("fin_timeout_ms", "milliseconds"),
    ("rx_buffer", "bytes (k/m suffix)"),
    ("tx_buffer", "bytes (k/m suffix)"),
    ("congestion", "reno|newreno|cubic"),
    ("port_range", "LOW-HIGH"),
    ("mss", "bytes"),
    ("nodelay", "bool"),
    ("timestamps", "bool"),
    ("sack", "bool"),
    ("tail_loss_probe", "bool"),
    ("window_scale", "bool"),
    ("delayed_ack_ms", "milliseconds"),
    ("initial_rto_ms", "milliseconds"),
    ("min_rto_ms", "milliseconds"),
    ("max_rto_ms", "milliseconds"),
    ("syn_retries", "count"),
    ("data_retries", "count"),
    ("max_sockets", "count"),
    ("max_backlog", "count"),
    ("max_syn_backlog", "count"),
    ("idle", "busy|backoff"),
    ("idle_sleep_us", "microseconds (sets idle=backoff)"),
    ("cpus", "none|CPU[,CPU...]"),
    ("xdp_attach", "generic|native"),
    ("xdp_zero_copy", "bool"),
    ("xdp_frames", "count"),
    ("xdp_ring_size", "power of two"),
    ("xdp_busy_poll_us", "microseconds"),
    ("stats_interval_ms", "milliseconds"),
    ("verify_checksums", "bool"),
    ("coalesce", "bool"),
];

fn bad(key: &str, value: &str) -> String {
    let shape = KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("?", |(_, s)| *s);
    format!("bad value {value:?} for {key} (expected {shape})")
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_u64(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// A byte count with an optional binary suffix: `65536`, `64k`, `4m`, `1g`.
fn parse_size(v: &str) -> Option<u64> {
    let lower = v.to_ascii_lowercase();
    let (digits, shift) = match lower.as_bytes().last()? {
        b'k' => (&lower[..lower.len() - 1], 10),
        b'm' => (&lower[..lower.len() - 1], 20),
        b'g' => (&lower[..lower.len() - 1], 30),
        _ => (&lower[..], 0),
    };
    parse_u64(digits)?.checked_mul(1 << shift)
}

fn parse_ip(v: &str) -> Option<Ipv4Addr> {
    v.parse().ok()
}

/// `ADDR/PREFIX` with a prefix of 1..=32 and a host address (not the
/// network or broadcast address of a prefix shorter than 31).
fn parse_cidr(v: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = v.split_once('/')?;
    let ip = parse_ip(a)?;
    let prefix: u8 = parse_u64(p)?.try_into().ok()?;
    if !(1..=32).contains(&prefix) || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast()
    {
        return None;
    }
    if prefix < 31 {
        let host = u32::from(ip) & (u32::MAX >> prefix);
        if host == 0 || host == u32::MAX >> prefix {
            return None;
        }
    }
    Some((ip, prefix))
}

fn parse_mac(v: &str) -> Option<EthernetAddress> {
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut b = [0u8; 6];
    for (o, p) in b.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    let mac = EthernetAddress(b);
    mac.is_unicast().then_some(mac)
}

/// Same rules as the kernel's (and `phy::sys`'s) interface names.
fn valid_ifname(v: &str) -> bool {
    !v.is_empty()
        && v.len() < 16
        && v != "."
        && v != ".."
        && !v
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

/// Runs `f` and says it worked (for the match arms that always succeed).
fn done(f: impl FnOnce()) -> Option<()> {
    f();
    Some(())
}

fn millis(v: &str) -> Option<Duration> {
    parse_u64(v).map(Duration::from_millis)
}

impl Settings {
    /// Sets one key. On error the settings are unchanged and the message
    /// names the key and what it expects.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let key = key.replace('-', "_");
        let key = key.as_str();
        let value = value.trim();
        let tcp = &mut self.endpoint.tcp;
        let ok = match key {
            "device" => match value {
                "xdp" => done(|| self.device = Some(DeviceKind::Xdp)),
                "tap" => done(|| self.device = Some(DeviceKind::Tap)),
                _ => None,
            },
            "ifname" => valid_ifname(value).then(|| self.ifname = Some(value.to_string())),
            "ip" => parse_cidr(value).map(|c| self.ip = Some(c)),
            "gateway" => parse_ip(value)
                .filter(|ip| !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast())
                .map(|ip| self.gateway = Some(ip)),
            "cores" => parse_u64(value)
                .filter(|n| (1..=MAX_CORES as u64).contains(n))
                .map(|n| self.cores = n as usize),
            "tap_host_ip" => parse_cidr(value).map(|c| self.tap_host_ip = Some(c)),
            "pcap" => (!value.is_empty()).then(|| self.pcap = Some(PathBuf::from(value))),
            "mac" => parse_mac(value).map(|m| self.mac = Some(m)),
            "msl_ms" => millis(value).filter(|d| !d.is_zero()).map(|d| tcp.msl = d),
            "fin_timeout_ms" => millis(value)
                .filter(|d| !d.is_zero())
                .map(|d| tcp.fin_timeout = d),
            "rx_buffer" => parse_size(value)
                .filter(|n| (1024..=1 << 30).contains(n))
                .map(|n| tcp.rx_buffer = n as usize),
            "tx_buffer" => parse_size(value)
                .filter(|n| (1024..=1 << 30).contains(n))
                .map(|n| tcp.tx_buffer = n as usize),
            "congestion" => match value.to_ascii_lowercase().as_str() {
                "reno" => done(|| tcp.congestion = Algorithm::Reno),
                "newreno" => done(|| tcp.congestion = Algorithm::NewReno),
                "cubic" => done(|| tcp.congestion = Algorithm::Cubic),
                _ => None,
            },
            "port_range" => value
                .split_once('-')
                .and_then(|(lo, hi)| Some((parse_u64(lo)?, parse_u64(hi)?)))
                .filter(|&(lo, hi)| 1 <= lo && lo <= hi && hi <= 65535)
                .map(|(lo, hi)| self.endpoint.local_ports = (lo as u16, hi as u16)),
            "mss" => parse_u64(value)
                .filter(|n| (88..=9000).contains(n))
                .map(|n| tcp.mss = n as u16),
            "nodelay" => parse_bool(value).map(|b| tcp.nodelay = b),
            "timestamps" => parse_bool(value).map(|b| tcp.timestamps = b),
            "sack" => parse_bool(value).map(|b| tcp.sack = b),
            "tail_loss_probe" => parse_bool(value).map(|b| tcp.tail_loss_probe = b),
            "window_scale" => parse_bool(value).map(|b| tcp.window_scale = b),
            "delayed_ack_ms" => millis(value)
                .filter(|d| d.total_millis() <= 500)
                .map(|d| tcp.delayed_ack = d),
            "initial_rto_ms" => millis(value)
                .filter(|d| !d.is_zero())
                .map(|d| tcp.initial_rto = d),
            "min_rto_ms" => millis(value)
                .filter(|d| !d.is_zero())
                .map(|d| tcp.min_rto = d),
            "max_rto_ms" => millis(value)
                .filter(|d| !d.is_zero())
                .map(|d| tcp.max_rto = d),
            "syn_retries" => parse_u64(value)
                .filter(|n| (1..=127).contains(n))
                .map(|n| tcp.syn_retries = n as u32),
            "data_retries" => parse_u64(value)
                .filter(|n| (1..=255).contains(n))
                .map(|n| tcp.data_retries = n as u32),
            "max_sockets" => parse_u64(value)
                .filter(|n| (1..=1 << 24).contains(n))
                .map(|n| self.endpoint.max_sockets = n as usize),
            "max_backlog" => parse_u64(value)
                .filter(|n| (1..=1 << 20).contains(n))
                .map(|n| self.endpoint.max_backlog = n as usize),
            "max_syn_backlog" => parse_u64(value)
                .filter(|n| (1..=1 << 20).contains(n))
                .map(|n| self.endpoint.max_syn_backlog = n as usize),
            "idle" => match value {
                "busy" => done(|| self.idle = IdlePolicy::BusyPoll),
                "backoff" => {
                    let max_sleep = match self.idle {
                        IdlePolicy::Backoff { max_sleep } => max_sleep,
                        IdlePolicy::BusyPoll => Duration::from_millis(1),
                    };
                    done(|| self.idle = IdlePolicy::Backoff { max_sleep })
                }
                _ => None,
            },
            "idle_sleep_us" => parse_u64(value)
                .filter(|n| (1..=1_000_000).contains(n))
                .map(|n| {
                    self.idle = IdlePolicy::Backoff {
                        max_sleep: Duration::from_micros(n),
                    }
                }),
            "cpus" => {
                if value == "none" {
                    done(|| self.cpus.clear())
                } else {
                    value
                        .split(',')
                        .map(|c| parse_u64(c.trim()).filter(|&n| n < 4096))
                        .collect::<Option<Vec<u64>>>()
                        .map(|v| self.cpus = v.into_iter().map(|n| n as usize).collect())
                }
            }
            "xdp_attach" => match value {
                "generic" => done(|| self.xdp.attach = AttachMode::Generic),
                "native" => done(|| self.xdp.attach = AttachMode::Native),
                _ => None,
            },
            "xdp_zero_copy" => parse_bool(value).map(|b| self.xdp.zero_copy = b),
            "xdp_frames" => parse_u64(value)
                .filter(|n| (64..=1 << 20).contains(n))
                .map(|n| self.xdp.frames = n as u32),
            "xdp_ring_size" => parse_u64(value)
                .filter(|n| (64..=1 << 16).contains(n) && n.is_power_of_two())
                .map(|n| self.xdp.ring_size = n as u32),
            "xdp_busy_poll_us" => parse_u64(value)
                .filter(|&n| n <= 1_000_000)
                .map(|n| self.xdp.busy_poll_usecs = n as u32),
            "stats_interval_ms" => millis(value)
                .filter(|d| !d.is_zero())
                .map(|d| self.stats_interval = d),
            "verify_checksums" => parse_bool(value).map(|b| self.verify_checksums = b),
            "coalesce" => parse_bool(value).map(|b| self.coalesce = b),
            _ => return Err(format!("unknown key {key:?}")),
        };
        ok.ok_or_else(|| bad(key, value))
    }

    /// The checks that need several keys: what `fl_start` refuses before it
    /// touches the system.
    pub fn validate(&self) -> Result<(), String> {
        let device = self.device.ok_or("device is not set (xdp or tap)")?;
        if self.ifname.is_none() {
            return Err("ifname is not set".into());
        }
        if self.ip.is_none() {
            return Err("ip is not set (ADDR/PREFIX)".into());
        }
        if device == DeviceKind::Xdp && self.tap_host_ip.is_some() {
            return Err("tap_host_ip needs device=tap".into());
        }
        if device == DeviceKind::Xdp && self.mac.is_some() {
            return Err("mac needs device=tap (AF_XDP uses the interface's MAC)".into());
        }
        if let (Some((ip, _)), Some((host, _))) = (self.ip, self.tap_host_ip) {
            if ip == host {
                return Err("tap_host_ip must differ from ip".into());
            }
        }
        let tcp = &self.endpoint.tcp;
        if tcp.min_rto > tcp.max_rto {
            return Err("min_rto_ms is above max_rto_ms".into());
        }
        if self.xdp.frames < 2 * self.xdp.ring_size.min(self.xdp.frames / 2) {
            return Err("xdp_frames is too small for xdp_ring_size".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flags_and_tunables_parse() {
        let mut s = Settings::default();
        for (k, v) in [
            ("device", "tap"),
            ("ifname", "fl0"),
            ("ip", "10.77.1.2/24"),
            ("gateway", "10.77.1.1"),
            ("cores", "2"),
            ("tap-host-ip", "10.77.1.1/24"),
            ("pcap", "/tmp/x.pcap"),
            ("msl_ms", "1000"),
            ("rx_buffer", "64k"),
            ("tx_buffer", "1m"),
            ("congestion", "cubic"),
            ("port_range", "40000-40100"),
            ("idle", "backoff"),
            ("cpus", "0,1"),
            ("coalesce", "off"),
        ] {
            s.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
        assert!(!s.coalesce);
        assert_eq!(s.device, Some(DeviceKind::Tap));
        assert_eq!(s.ip, Some((Ipv4Addr::new(10, 77, 1, 2), 24)));
        assert_eq!(s.cores, 2);
        assert_eq!(s.endpoint.tcp.rx_buffer, 64 << 10);
        assert_eq!(s.endpoint.tcp.tx_buffer, 1 << 20);
        assert_eq!(s.endpoint.tcp.congestion, Algorithm::Cubic);
        assert_eq!(s.endpoint.local_ports, (40000, 40100));
        assert_eq!(s.endpoint.tcp.msl, Duration::from_millis(1000));
        assert_eq!(s.cpus, vec![0, 1]);
        s.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_and_change_nothing() {
        let mut s = Settings::default();
        assert!(s.set("colour", "blue").unwrap_err().contains("unknown key"));
        for (k, v) in [
            ("device", "dpdk"),
            ("ip", "10.77.1.2"),
            ("ip", "10.77.1.0/24"),
            ("ip", "10.77.1.2/33"),
            ("cores", "0"),
            ("cores", "65"),
            ("cores", "-1"),
            ("ifname", "a/b"),
            ("ifname", "sixteen-bytes-xx"),
            ("rx_buffer", "12"),
            ("congestion", "bbr"),
            ("port_range", "5-1"),
            ("port_range", "0-10"),
            ("nodelay", "maybe"),
            ("coalesce", "maybe"),
            ("mac", "01:00:00:00:00:01"),
            ("xdp_ring_size", "100"),
        ] {
            let before = format!("{s:?}");
            assert!(s.set(k, v).is_err(), "{k}={v} accepted");
            assert_eq!(before, format!("{s:?}"), "{k}={v} changed the settings");
        }
    }

    #[test]
    fn validate_names_what_is_missing() {
        let mut s = Settings::default();
        assert!(s.validate().unwrap_err().contains("device"));
        s.set("device", "xdp").unwrap();
        assert!(s.validate().unwrap_err().contains("ifname"));
        s.set("ifname", "fl0").unwrap();
        assert!(s.validate().unwrap_err().contains("ip"));
        s.set("ip", "10.77.1.2/24").unwrap();
        s.validate().unwrap();
        s.set("tap_host_ip", "10.77.1.1/24").unwrap();
        assert!(s.validate().unwrap_err().contains("tap"));
    }
}
