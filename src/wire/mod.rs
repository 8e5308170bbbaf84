//! Wire formats: zero-copy `Packet<T: AsRef<[u8]>>` views with a length check
//! on construction, and `Repr` structs holding the parsed, validated meaning.
//!
//! Byte offsets live only here. Everything above sees `Repr` values. Parsing
//! untrusted bytes never panics: it returns an [`Error`] naming the reason,
//! which the interface counts.

mod seq;
pub mod tcp;

pub use seq::SeqNumber;
pub use tcp::{TcpFlags, TcpOptions, TcpRepr, TcpTimestamp};
