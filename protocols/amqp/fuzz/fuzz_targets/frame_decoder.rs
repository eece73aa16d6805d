//! Feeds arbitrary bytes to the AMQP framing and the method, content-header, property and
//! field-table decoders behind it. Properties: see `tributary_amqp::codec::check::check_decoders`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary_amqp::codec::check::check_decoders(data);
});
