//! Any byte string given to the checkpoint decoder must give `Ok` or `Err`, never a
//! panic, an abort or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapegrad_io::{format, Checkpoint};

fuzz_target!(|data: &[u8]| {
    // The whole file path (envelope checks, then the decoder)...
    let _ = Checkpoint::from_bytes(data);
    // ...and the payload decoder alone, which random bytes rarely reach past a checksum.
    let _ = format::decode_payload::<Checkpoint>(data);
});
