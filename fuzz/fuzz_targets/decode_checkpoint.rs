//! Any byte string given to the checkpoint decoder must give `Ok` or `Err`, never a
//! panic, an abort or a huge allocation; and whatever decodes must be usable by ops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapegrad_fuzz::exercise;
use tapegrad_io::{format, Checkpoint};

fuzz_target!(|data: &[u8]| {
    // The whole file path (envelope checks, then the decoder)...
    if let Ok(c) = Checkpoint::from_bytes(data) {
        exercise(&c.model);
    }
    // ...and the payload decoder alone, which random bytes rarely reach past a checksum
    // (a forger's file, whose checksum is valid whatever it holds).
    if let Ok(c) = format::decode_payload::<Checkpoint>(data) {
        exercise(&c.model);
    }
});
