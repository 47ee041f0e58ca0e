//! Any byte string given to the safetensors reader must give `Ok` or `Err`, never a
//! panic, an abort or a huge allocation; and whatever decodes must be usable by ops.
//! safetensors has no checksum, so every file is as a forger wrote it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapegrad_fuzz::exercise;
use tapegrad_io::from_safetensors;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = from_safetensors(data) {
        exercise(&state);
    }
});
