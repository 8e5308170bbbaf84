//! Which core owns a flow.
//!
//! Owns: the mapping from a 4-tuple to a core. The NIC's RSS hash (Toeplitz)
//! and indirection table decide which receive queue, and so which core, sees
//! a flow's packets; [`rss`] computes the same function in software so the
//! stack can predict it, and picks source ports for active opens whose
//! replies land on the core that opened them (DESIGN.md, principle 3).
//!
//! Never: locks, shares mutable state between cores, reads a clock or draws
//! its own randomness. Everything here is a pure function of its inputs and
//! of configuration fixed at start-up (the RSS key and indirection table,
//! which must mirror the NIC's).
//!
//! Planned beside it: the per-core connection table (4-tuple to slab key) and
//! the bounded cross-core mailboxes.

pub mod rss;
