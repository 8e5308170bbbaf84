//! flowlane: a userspace TCP/IP stack for servers that own a NIC.
//!
//! Layers, bottom up (see DESIGN.md):
//! - [`time`]: virtual or real time as integer ticks; nothing below the
//!   runtime reads a clock.
//! - [`rand`]: the seeded PRNG behind every random decision.
//! - [`wire`]: zero-copy packet views and parsed `Repr`s.
//! - [`storage`]: ring buffers and the out-of-order assembler.
//! - [`timer`]: the per-core hierarchical timer wheel.
//! - [`tcp`]: the sans-IO TCP connection and listener.
//! - [`phy`]: devices that move frames in batches; the in-memory link.
//! - [`iface`]: Ethernet, ARP, IPv4, ICMP and the demux to TCP.
//! - [`shard`]: which core owns a flow: the RSS (Toeplitz) hash and port choice.
//! - [`api`]: the Rust socket API every front end builds on.
//! - [`apps`]: the echo and HTTP servers (and test clients) on that API.
//! - [`runtime`]: the pinned per-core loops.
//! - `ffi`: the C ABI (`include/flowlane.h`) over `api` and `runtime`.
#![deny(unsafe_code)]

pub mod api;
pub mod apps;
#[cfg(target_os = "linux")]
pub mod ffi;
pub mod iface;
pub mod phy;
pub mod rand;
pub mod runtime;
pub mod shard;
pub mod storage;
pub mod tcp;
pub mod time;
pub mod timer;
pub mod wire;
