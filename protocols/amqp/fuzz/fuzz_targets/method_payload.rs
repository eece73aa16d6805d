//! Feeds a bare frame payload to the method, content-header, property and field-table decoders
//! and checks their round trips. Properties: see `tributary_amqp::codec::check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary_amqp::codec::check::check_method_payload(data);
});
