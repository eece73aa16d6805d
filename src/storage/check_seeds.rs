//! Seeds of the `segment_recovery` corpus (`fuzz/corpus/segment_recovery`) and their replay:
//! every file on disk (seeds and regression inputs found by fuzzing) passes
//! [`check_segment_recovery`], and so do deterministic mutations of the smaller ones; the built
//! seeds are on disk as built (set `TRIBUTARY_WRITE_RECOVERY_CORPUS=1` to rewrite them).

use std::path::PathBuf;

use bytes::Bytes;
use tributary_api::batch::{Record, build_batch, reseal, set_base_offset};

use super::check_segment_recovery;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/segment_recovery")
}

/// Back-to-back batches of `sizes` records with dense offsets from 0.
fn log(sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    for (batch_index, size) in sizes.iter().enumerate() {
        let records: Vec<Record> = (0..*size)
            .map(|i| Record {
                key: Some(Bytes::from(format!("k{batch_index}-{i}"))),
                value: Some(Bytes::from(format!("value {i}"))),
                timestamp: 1_700_000_000_000 + i as i64,
                headers: Vec::new(),
            })
            .collect();
        let mut batch = build_batch(&records).to_vec();
        set_base_offset(&mut batch, offset);
        offset += *size as i64;
        out.extend_from_slice(&batch);
    }
    out
}

fn with_flags(flags: u8, index_entries: u8, marker: u8, index: &[u8], log: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, index_entries, marker];
    out.extend_from_slice(index);
    out.extend_from_slice(log);
    out
}

fn seed_corpus() -> Vec<(String, Vec<u8>)> {
    let good = log(&[3, 1, 4]);
    let mut torn = good.clone();
    torn.truncate(good.len() - 9);
    let mut interior = good.clone();
    interior[80] ^= 0x40;
    let mut gap = log(&[2, 2]);
    let second = gap.len() / 2;
    set_base_offset(&mut gap[second..], 7);
    let mut lying = log(&[2]);
    lying[57..61].copy_from_slice(&1000i32.to_be_bytes());
    reseal(&mut lying);
    let garbage_index: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
    vec![
        ("empty".into(), with_flags(0, 0, 0, &[], &[])),
        ("three_batches".into(), with_flags(0, 0, 0, &[], &good)),
        ("torn_tail".into(), with_flags(0, 0, 0, &[], &torn)),
        (
            "interior_bit_flip".into(),
            with_flags(0, 0, 0, &[], &interior),
        ),
        ("offset_gap".into(), with_flags(0, 0, 0, &[], &gap)),
        (
            "resealed_lying_count".into(),
            with_flags(2, 0, 0, &[], &lying),
        ),
        (
            "garbage_indexes".into(),
            with_flags(1 | 8, 8, 0, &garbage_index, &good),
        ),
        (
            "clean_marker_past_end".into(),
            with_flags(4, 0, 200, &[], &good),
        ),
        ("clean_marker_torn".into(), with_flags(4, 0, 8, &[], &torn)),
        (
            "zeros_after_batches".into(),
            with_flags(0, 0, 0, &[], &[good, vec![0; 100]].concat()),
        ),
    ]
}

#[test]
fn segment_recovery_corpus_replays_with_mutations() {
    let dir = corpus_dir();
    let seeds = seed_corpus();
    if std::env::var_os("TRIBUTARY_WRITE_RECOVERY_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("write seed");
        }
    }
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read seed"))
        })
        .collect();
    files.sort();
    for (name, built) in &seeds {
        let on_disk = files.iter().find(|(file, _)| file == name).map(|(_, b)| b);
        assert_eq!(
            on_disk,
            Some(built),
            "segment_recovery/{name} is not what the builder makes"
        );
    }
    let mut state = 0xD1B5_4A32_D192_ED03u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (_, data) in &files {
        check_segment_recovery(data);
        if data.len() < 4 {
            continue;
        }
        // Each mutation opens a storage directory twice: a few per seed keep this fast.
        for _ in 0..4 {
            let mut mutated = data.clone();
            let at = 3 + (next() as usize) % (mutated.len() - 3);
            mutated[at] ^= (next() as u8) | 1;
            mutated[0] = next() as u8 & 0x0F;
            check_segment_recovery(&mutated);
        }
    }
}
