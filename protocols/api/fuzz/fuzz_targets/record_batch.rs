//! Feeds arbitrary bytes to the record-batch verifier and decoder, as given and with the
//! length and CRC made consistent. Properties: see
//! `tributary_api::compression::check::check_record_batch`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary_api::compression::check::check_record_batch(data);
});
