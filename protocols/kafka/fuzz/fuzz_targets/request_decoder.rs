//! Feeds arbitrary bytes to the Kafka framing and request firewall, and the record sets of a
//! Produce to the produce handler's batch split and the record decoder. Properties: see
//! `tributary_kafka::check::check_decoders`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary_kafka::check::check_decoders(data);
});
