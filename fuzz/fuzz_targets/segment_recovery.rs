//! Feeds arbitrary bytes, laid out as a partition directory, to segment recovery. Properties:
//! see `tributary::storage::check::check_segment_recovery`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary::storage::check::check_segment_recovery(data);
});
