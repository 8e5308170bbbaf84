//! Buffers for connection data.
//!
//! Owns: [`RingBuffer`], the fixed-capacity byte ring behind every TCP send
//! and receive buffer, and [`Assembler`], the record of which out-of-order
//! byte ranges beyond `RCV.NXT` have arrived; [`BufferPool`], ring storage
//! closed connections leave for the next ones.
//!
//! Never: knows about sequence numbers, segments or sockets (callers pass
//! plain offsets relative to the buffer's head or the contiguous point),
//! allocates after construction, or panics on a caller's out-of-range
//! offset: operations clamp and report how many bytes they handled.
//! (A ring allocates its storage on the first write, or takes it from the
//! pool, and can give it back; it never grows.)

pub mod assembler;
pub mod pool;
pub mod ring;

pub use assembler::{Assembler, TooManyHoles};
pub use pool::BufferPool;
pub use ring::RingBuffer;
