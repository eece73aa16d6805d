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

mod compressed {
    use bytes::{Bytes, BytesMut};
    use tributary_api::TopicPartition;
    use tributary_api::batch::{
        BatchError, Record, build_batch, build_compressed_batch, reseal, set_base_offset,
    };
    use tributary_api::compression::Codec;
    use tributary_api::transactions::Committed;

    use super::super::{Encoder, Found};
    use crate::registry::Subscription;

    fn records(from: usize, count: usize) -> Vec<Record> {
        (from..from + count)
            .map(|i| Record {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("body {i}").repeat(30))),
                timestamp: 1_700_000_000_000 + i as i64,
                headers: vec![(Bytes::from_static(b"TAGS"), Some(Bytes::from_static(b"t")))],
            })
            .collect()
    }

    fn log(batches: &[(i64, Bytes)]) -> Bytes {
        let mut out = BytesMut::new();
        for (base, batch) in batches {
            let mut batch = BytesMut::from(&batch[..]);
            set_base_offset(&mut batch, *base);
            out.extend_from_slice(&batch);
        }
        out.freeze()
    }

    /// A zstd batch whose records do not inflate (CRC recomputed, so only decoding fails).
    fn corrupt_zstd(records: &[Record]) -> Bytes {
        let mut batch = BytesMut::from(&build_compressed_batch(records, Codec::Zstd).unwrap()[..]);
        let len = batch.len();
        batch[61 + 6..len - 4].fill(0xC3);
        reseal(&mut batch);
        batch.freeze()
    }

    fn encode(data: Bytes, from: i64, max_messages: usize) -> Found {
        let partition = TopicPartition::new("T", 0);
        let filter = Subscription::all();
        let inflated = tributary_api::compression::InflatedBatches::default();
        let mut encoder = Encoder {
            partition: &partition,
            topic_id: 1,
            store_host: "127.0.0.1:10911".parse().unwrap(),
            filter: &filter,
            max_messages,
            properties: String::new(),
            inflated: &inflated,
            committed: &Committed::everything(i64::MAX),
        };
        let mut found = Found {
            body: BytesMut::new(),
            count: 0,
            next: from,
            undeliverable: None,
        };
        encoder.encode_batches(data, &mut found).unwrap();
        found
    }

    #[test]
    fn compressed_batches_of_every_codec_are_pulled() {
        let mut batches = vec![(0, build_batch(&records(0, 4)))];
        for (n, codec) in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd]
            .into_iter()
            .enumerate()
        {
            let from = 4 + n * 4;
            batches.push((
                from as i64,
                build_compressed_batch(&records(from, 4), codec).unwrap(),
            ));
        }
        let found = encode(log(&batches), 0, 1000);
        assert_eq!(found.count, 20);
        assert_eq!(found.next, 20);
        assert!(found.undeliverable.is_none());
        // Same bytes as the uncompressed encoding of the same records.
        let plain = encode(log(&[(0, build_batch(&records(0, 20)))]), 0, 1000);
        assert_eq!(found.body, plain.body);
    }

    #[test]
    fn a_corrupt_batch_stops_the_pull_with_the_offset_before_it() {
        let data = log(&[
            (0, build_batch(&records(0, 3))),
            (3, corrupt_zstd(&records(3, 3))),
            (6, build_batch(&records(6, 3))),
        ]);
        let found = encode(data, 0, 100);
        assert_eq!(found.count, 3, "the messages before it are answered");
        assert_eq!(found.next, 3, "nextBeginOffset stops at the bad batch");
        let (offset, error) = found.undeliverable.expect("the bad batch is named");
        assert_eq!(offset, 3);
        assert!(matches!(error, BatchError::Decompress(_)), "{error:?}");

        // Pulling from the bad batch finds nothing and names it again; the offset stays.
        let again = encode(log(&[(3, corrupt_zstd(&records(3, 3)))]), 3, 100);
        assert_eq!(again.count, 0);
        assert_eq!(again.next, 3);
        assert_eq!(again.undeliverable.map(|(o, _)| o), Some(3));
    }

    #[test]
    fn batches_wholly_before_the_position_are_not_decoded() {
        // A kept read starting at a corrupt batch the client has chosen to pull past.
        let data = log(&[
            (3, corrupt_zstd(&records(3, 3))),
            (6, build_batch(&records(6, 3))),
        ]);
        let found = encode(data, 6, 100);
        assert!(found.undeliverable.is_none());
        assert_eq!((found.count, found.next), (3, 9));
    }

    #[test]
    fn control_batches_are_passed_over() {
        let mut control = BytesMut::from(&build_batch(&records(0, 1))[..]);
        control[22] |= 0x20;
        reseal(&mut control);
        let found = encode(
            log(&[(0, control.freeze()), (1, build_batch(&records(1, 2)))]),
            0,
            100,
        );
        assert_eq!(found.count, 2);
        assert_eq!(found.next, 3);
    }

    #[test]
    fn compacted_batches_are_passed_to_their_end() {
        // Offsets 0..=3 with only 1 left, an emptied batch over 4..=6, then 7..=8.
        let full = build_batch(&records(0, 4));
        let header = tributary_api::BatchHeader::parse(&full).unwrap();
        let kept: Vec<_> = tributary_api::batch::decode_records(&full)
            .unwrap()
            .into_iter()
            .filter(|stored| stored.offset == 1)
            .collect();
        let thinned = tributary_api::batch::rebuild_batch(&header, &kept).unwrap();
        let emptied = tributary_api::batch::empty_batch(4, 6, 0);
        let at_the_end = log(&[(0, thinned.clone()), (4, emptied.clone())]);
        let found = encode(at_the_end, 2, 100);
        assert_eq!(
            (found.count, found.next),
            (0, 7),
            "a removed tail and an emptied batch ending the log are passed"
        );
        let data = log(&[(0, thinned), (4, emptied), (7, build_batch(&records(7, 2)))]);
        let found = encode(data.clone(), 2, 100);
        assert_eq!(found.count, 2, "the records at 7 and 8");
        assert_eq!(found.next, 9);
        let found = encode(data.clone(), 0, 1);
        assert_eq!(
            (found.count, found.next),
            (1, 2),
            "the record at 1, and a full pull"
        );
        let found = encode(data, 2, 1);
        assert_eq!(
            (found.count, found.next),
            (1, 8),
            "the next pull passes the removed tail and the emptied batch"
        );
    }
}
