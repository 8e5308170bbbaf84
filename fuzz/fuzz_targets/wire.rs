//! Every wire parser on any bytes, layer by layer (`tests/wirekit`).
#![no_main]

#[path = "../../tests/framekit/mod.rs"]
mod framekit;
#[path = "../../tests/fuzzkit/mod.rs"]
mod fuzzkit;
#[path = "../../tests/wirekit/mod.rs"]
mod wirekit;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    fuzzkit::wire(bytes);
});
