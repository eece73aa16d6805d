//! `take_records`: compressed batches are delivered like plain ones, control batches are passed
//! over, and a batch that cannot be decoded stops the read without the position passing it.

use bytes::{Bytes, BytesMut};
use tributary_api::batch::{
    BatchError, Record, build_batch, build_compressed_batch, reseal, set_base_offset,
};
use tributary_api::compression::Codec;

use super::*;

fn records(from: usize, count: usize) -> Vec<Record> {
    (from..from + count)
        .map(|i| Record {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}").repeat(20))),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: Vec::new(),
        })
        .collect()
}

/// Batches laid out as the log returns them, each at its base offset.
fn log(batches: &[(i64, Bytes)]) -> Bytes {
    let mut out = BytesMut::new();
    for (base, batch) in batches {
        let mut batch = BytesMut::from(&batch[..]);
        set_base_offset(&mut batch, *base);
        out.extend_from_slice(&batch);
    }
    out.freeze()
}

/// `take_records` on partition 0 of `s` with a fresh inflate cache.
fn take(data: &Bytes, next: &mut i64, max: usize) -> Taken {
    let inflated = InflatedBatches::default();
    let everything = Committed::everything(i64::MAX);
    take_records(
        &inflated,
        &TopicPartition::new("s", 0),
        &everything,
        data,
        next,
        max,
    )
}

fn values(taken: &Taken) -> Vec<Bytes> {
    taken
        .deliveries
        .iter()
        .map(|d| d.record.value.clone().unwrap())
        .collect()
}

/// A gzip batch whose records section is garbage (CRC recomputed, so only decoding fails).
fn corrupt_gzip(records: &[Record]) -> Bytes {
    let mut batch = BytesMut::from(&build_compressed_batch(records, Codec::Gzip).unwrap()[..]);
    let len = batch.len();
    batch[61 + 10..len - 8].fill(0x5A);
    reseal(&mut batch);
    batch.freeze()
}

#[test]
fn compressed_batches_of_every_codec_are_delivered_in_order() {
    let mut batches = vec![(0, build_batch(&records(0, 5)))];
    let mut expected = records(0, 5);
    for (n, codec) in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd]
        .into_iter()
        .enumerate()
    {
        let from = 5 + n * 5;
        batches.push((
            from as i64,
            build_compressed_batch(&records(from, 5), codec).unwrap(),
        ));
        expected.extend(records(from, 5));
    }
    let data = log(&batches);
    let mut next = 0;
    let taken = take(&data, &mut next, 1000);
    assert_eq!(taken.undeliverable, None);
    assert_eq!(next, 25);
    let ids: Vec<u64> = taken.deliveries.iter().map(|d| d.id).collect();
    assert_eq!(ids, (0..25).collect::<Vec<u64>>());
    let got: Vec<Record> = taken.deliveries.into_iter().map(|d| d.record).collect();
    assert_eq!(got, expected);
}

#[test]
fn a_read_starting_inside_a_compressed_batch_takes_from_there_and_stops_at_max() {
    let data = log(&[(
        10,
        build_compressed_batch(&records(0, 8), Codec::Zstd).unwrap(),
    )]);
    let mut next = 13;
    let taken = take(&data, &mut next, 2);
    let ids: Vec<u64> = taken.deliveries.iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![13, 14]);
    assert_eq!(next, 15);
}

#[test]
fn a_batch_that_cannot_be_decoded_stops_the_read_before_it() {
    let data = log(&[
        (0, build_batch(&records(0, 3))),
        (3, corrupt_gzip(&records(3, 3))),
        (6, build_batch(&records(6, 3))),
    ]);
    // Records before it are taken; the position stops at the bad batch.
    let mut next = 0;
    let taken = take(&data, &mut next, 100);
    assert_eq!(values(&taken).len(), 3);
    assert_eq!(next, 3);
    let bad = taken.undeliverable.expect("the read names the bad batch");
    assert_eq!(bad.offset, 3);
    assert!(
        matches!(bad.error, BatchError::Decompress(_)),
        "{:?}",
        bad.error
    );
    // Reading again from there takes nothing and names it again: never skipped.
    let second = take(&log(&[(3, corrupt_gzip(&records(3, 3)))]), &mut next, 100);
    assert!(second.deliveries.is_empty());
    assert_eq!(second.undeliverable.map(|b| b.offset), Some(3));
    assert_eq!(next, 3);
}

#[test]
fn unknown_codec_bits_are_undeliverable_with_their_reason() {
    let mut batch = BytesMut::from(&build_batch(&records(0, 2))[..]);
    batch[22] |= 0x06; // codec 6
    reseal(&mut batch);
    let data = log(&[(0, batch.freeze())]);
    let mut next = 0;
    let taken = take(&data, &mut next, 10);
    assert!(taken.deliveries.is_empty());
    let bad = taken.undeliverable.unwrap();
    assert_eq!(bad.error, BatchError::UnknownCodec(6));
    assert_eq!(next, 0);
    let reply = bad.refuse("s");
    assert_eq!(reply.code, INTERNAL_ERROR);
    assert!(reply.text.contains("offset 0"), "{}", reply.text);
    assert!(reply.text.contains("'s'"), "{}", reply.text);
}

#[test]
fn control_batches_are_passed_over() {
    let mut control = BytesMut::from(&build_batch(&records(0, 1))[..]);
    control[22] |= 0x20;
    reseal(&mut control);
    let data = log(&[(0, control.freeze()), (1, build_batch(&records(1, 2)))]);
    let mut next = 0;
    let taken = take(&data, &mut next, 10);
    let ids: Vec<u64> = taken.deliveries.iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(next, 3);
}
