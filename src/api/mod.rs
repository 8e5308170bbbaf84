//! The Rust socket API every front end (CLI apps, the C ABI) builds on.
//!
//! A [`Stack`] is one interface plus one TCP endpoint, driven by
//! [`Stack::poll`] with the caller's `now` and device; [`Stack::poll_at`]
//! says when to call it next. Socket calls live on [`Stack::tcp`]
//! (`socket`, `bind`, `listen`, `accept`, `connect`, `send`, `recv`,
//! `shutdown`, `close`, options, `readiness`); they never block.

pub mod pair;

use core::net::Ipv4Addr;

pub use crate::iface::{Interface, InterfaceConfig, InterfaceCounters};
pub use crate::tcp::{
    Endpoint, EndpointConfig, EndpointCounters, FourTuple, Readiness, Shutdown, SocketError,
    SocketHandle, SocketOptions, State, TcpInfo,
};

use crate::phy::Device;
use crate::time::Instant;
use crate::wire::EthernetAddress;

/// Everything one stack needs to start.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub iface: InterfaceConfig,
    pub endpoint: EndpointConfig,
}

impl StackConfig {
    pub fn new(mac: EthernetAddress, ip: Ipv4Addr, prefix_len: u8) -> StackConfig {
        StackConfig {
            iface: InterfaceConfig::new(mac, ip, prefix_len),
            endpoint: EndpointConfig::default(),
        }
    }
}

/// One interface and its TCP endpoint.
pub struct Stack {
    pub iface: Interface,
    pub tcp: Endpoint,
}

impl Stack {
    pub fn new(config: StackConfig) -> Stack {
        let mut tcp = Endpoint::new(config.endpoint);
        tcp.set_local_addrs(&[config.iface.ip]);
        Stack {
            iface: Interface::new(config.iface),
            tcp,
        }
    }

    /// Receives a burst, runs TCP, transmits. Returns true if frames moved.
    pub fn poll<D: Device + ?Sized>(&mut self, now: Instant, device: &mut D) -> bool {
        self.iface.poll(now, device, &mut self.tcp)
    }

    /// Makes this stack core `core` of `rss.queues()` cores: passive flows
    /// that hash elsewhere are set aside for their core, and active opens
    /// pick ports that hash here.
    pub fn set_steering(&mut self, rss: Option<(crate::shard::rss::Rss, usize)>) {
        self.iface.set_steering(
            rss.clone()
                .map(|(rss, core)| crate::iface::Steering { rss, core }),
        );
        self.tcp.set_steering(rss);
    }

    /// Processes a frame forwarded from another core (see
    /// [`Interface::take_misdirected`]).
    pub fn inject(&mut self, now: Instant, frame: &[u8]) {
        self.iface.inject(now, frame, &mut self.tcp);
    }

    /// The earliest time the stack needs a poll (ZERO: at once).
    pub fn poll_at(&self) -> Option<Instant> {
        match (self.iface.poll_at(), self.tcp.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
