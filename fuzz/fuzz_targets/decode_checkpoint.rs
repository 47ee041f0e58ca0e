//! Any byte string given to the checkpoint decoder must give `Ok` or `Err`, never a
//! panic, an abort or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapegrad_io::{format, Checkpoint};

fuzz_target!(|data: &[u8]| {
    let _ = format::decode::<Checkpoint>(data);
    let _ = Checkpoint::from_bytes(data);
});
