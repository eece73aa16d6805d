//! Feeds arbitrary bytes to the remoting frame decoder and the body decoders behind it.
//! Properties: no panic; see `tributary_rocketmq::codec::check_decoders`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tributary_rocketmq::codec::check_decoders(data);
});
