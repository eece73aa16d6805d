//! Feeds arbitrary bytes to the Kafka framing and request firewall. Properties: no panic; an
//! incomplete frame leaves the buffer unchanged; a frame is never larger than the limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tributary_api::FrameLimits;
use tributary_kafka::codec::{route, split_frame};

const LIMITS: FrameLimits = FrameLimits {
    max_frame_bytes: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        match split_frame(&mut buf, LIMITS) {
            Ok(Some(raw)) => {
                assert!(raw.frame.len() + 4 <= LIMITS.max_frame_bytes);
                let _ = route(raw);
            }
            Ok(None) => {
                assert_eq!(buf, before);
                break;
            }
            Err(_) => break,
        }
    }
});
