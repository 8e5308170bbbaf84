//! flowlane: a userspace TCP/IP stack for servers that own a NIC.
//!
//! Layers, bottom up (see DESIGN.md):
//! - [`time`]: virtual or real time as integer ticks; nothing below the
//!   runtime reads a clock.
//! - [`wire`]: zero-copy packet views and parsed `Repr`s.
//! - [`tcp`]: the sans-IO TCP connection and listener.
//! - [`phy`]: devices that move frames in batches; the in-memory link.
//! - [`iface`]: Ethernet, ARP, IPv4, ICMP and the demux to TCP.
//! - [`api`]: the Rust socket API every front end builds on.
#![deny(unsafe_code)]

pub mod time;
pub mod wire;
