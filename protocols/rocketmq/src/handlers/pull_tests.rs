//! The pull path's borrowed encoding against the owned one (VIEW/QUERY), on 3,200 records of
//! 1 KiB. Also the harness of the instruction counts in BENCHMARKS.md:
//! `valgrind --tool=callgrind --toggle-collect='*view_path*'` on
//! `cargo test --release -p tributary-rocketmq -- --exact handlers::pull::tests::<test>`.
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tributary_api::TopicPartition;
use tributary_api::batch::{build_batch, decode_records};

use super::super::{MessageParts, encode_message, encode_parts};
use crate::records::{IncomingMessage, MessageView, OutgoingMessage};
use crate::registry::{Subscription, TagFilter};

fn batches() -> Vec<Bytes> {
    (0..3200)
        .map(|n| {
            let m = IncomingMessage {
                body: Bytes::from(vec![7u8; 1024]),
                flag: 0,
                sys_flag: 0,
                born_timestamp: 1_700_000_000_000 + n,
                born_host: "127.0.0.1:5555".parse().unwrap(),
                reconsume_times: 0,
                properties: vec![
                    ("TAGS".into(), "bench".into()),
                    ("UNIQ_KEY".into(), format!("7F000001{n:024X}")),
                    ("WAIT".into(), "true".into()),
                ],
            };
            build_batch(&[m.to_record(1_700_000_000_000 + n)])
        })
        .collect()
}

#[inline(never)]
fn owned_path(batches: &[Bytes], out: &mut BytesMut) {
    let p = TopicPartition::new("BenchConsume", 0);
    let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
    let filter = TagFilter::parse("*");
    for (i, b) in batches.iter().enumerate() {
        for stored in decode_records(b).unwrap() {
            let m = OutgoingMessage::from_record(&stored.record);
            if filter.matches(m.tag()) {
                encode_message(&p, 1, i as i64, &m, host, out).unwrap();
            }
        }
    }
}

#[inline(never)]
fn view_path(batches: &[Bytes], out: &mut BytesMut) {
    let p = TopicPartition::new("BenchConsume", 0);
    let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
    let filter = Subscription::all();
    let mut properties = String::new();
    for (i, b) in batches.iter().enumerate() {
        for stored in decode_records(b).unwrap() {
            let m = MessageView::of(&stored.record);
            if filter.matches(|n| m.property(n)) {
                m.write_properties(&mut properties).unwrap();
                let parts = MessageParts {
                    meta: m.meta,
                    body: m.body(),
                    properties: &properties,
                };
                encode_parts(&p, 1, i as i64, &parts, host, out).unwrap();
            }
        }
    }
}

#[test]
fn view_encoding_matches_owned_encoding() {
    let batches = batches();
    let (mut owned, mut viewed) = (BytesMut::new(), BytesMut::new());
    owned_path(&batches, &mut owned);
    view_path(&batches, &mut viewed);
    assert!(owned.len() > 3200 * 1024);
    assert_eq!(owned, viewed);
}
