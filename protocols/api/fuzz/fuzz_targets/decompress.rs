//! Feeds arbitrary bytes to the decompressors (byte 0 picks the codec) and to the record-batch
//! decoder. Properties: see `tributary_api::compression::check::check_decoders`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary_api::compression::check::check_decoders(data);
});
