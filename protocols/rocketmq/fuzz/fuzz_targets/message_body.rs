//! Feeds arbitrary bytes to the batch-body decoder, the properties parser and the record
//! mapping behind a send. Properties: see `tributary_rocketmq::check::check_message_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary_rocketmq::check::check_message_body(data);
});
