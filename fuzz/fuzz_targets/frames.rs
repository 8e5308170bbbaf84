//! Stack B with a listener and an established connection, driven by any
//! sequence of frames, time and application calls (`tests/fuzzkit`).
#![no_main]

#[path = "../../tests/framekit/mod.rs"]
mod framekit;
#[path = "../../tests/fuzzkit/mod.rs"]
mod fuzzkit;
#[path = "../../tests/wirekit/mod.rs"]
mod wirekit;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<fuzzkit::Op>| {
    fuzzkit::run(&ops);
});
