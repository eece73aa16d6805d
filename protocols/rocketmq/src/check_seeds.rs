//! Seed corpora of the `message_body` and `sql_filter` fuzz targets and their replay: every
//! file on disk (seeds and regression inputs found by fuzzing) passes the checks, and so do
//! deterministic mutations of it; every built seed is on disk as built (set
//! `TRIBUTARY_WRITE_ROCKETMQ_CORPUS=1` to rewrite them after a format change).

use std::path::PathBuf;

use bytes::Bytes;

use super::{check_message_body, check_sql_filter};
use crate::codec::message::{BatchEntry, encode_batch, format_properties};

fn batch_entry(flag: i32, body: &[u8], properties: &str) -> BatchEntry {
    BatchEntry {
        flag,
        body: Bytes::copy_from_slice(body),
        properties: properties.to_owned(),
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/corpus/{target}"))
}

fn message_body_seeds() -> Vec<(String, Vec<u8>)> {
    let properties = format_properties([
        ("KEYS", "order-1 order-2"),
        ("TAGS", "TagA"),
        ("UNIQ_KEY", "7F0000010001"),
        ("WAIT", "true"),
    ]);
    let escaped = format_properties([("=?b64?AAEC", "=?null?"), ("a", "=?b64?!!")]);
    let batch = encode_batch(&[
        batch_entry(0, b"hello", &properties),
        batch_entry(7, &[0u8; 40], ""),
        batch_entry(-1, b"x", &escaped),
    ]);
    let mut truncated = batch.to_vec();
    truncated.truncate(batch.len() - 3);
    let mut negative = encode_batch(&[batch_entry(0, b"abc", "a\u{1}b\u{2}")]).to_vec();
    negative[16..20].copy_from_slice(&(-5i32).to_be_bytes());
    let mut long_props = encode_batch(&[batch_entry(0, b"abc", "a\u{1}b\u{2}")]).to_vec();
    let at = long_props.len() - 6;
    long_props[at..at + 2].copy_from_slice(&i16::MAX.to_be_bytes());
    vec![
        ("batch_three_entries".into(), batch.to_vec()),
        ("batch_truncated".into(), truncated),
        ("batch_negative_body_length".into(), negative),
        ("batch_properties_length_lies".into(), long_props),
        ("properties_string".into(), properties.into_bytes()),
        ("properties_escaped".into(), escaped.into_bytes()),
        (
            "properties_reserved_name".into(),
            b"rmq.flag\x011\x02".to_vec(),
        ),
        ("properties_no_separators".into(), b"KEYS=a;TAGS=b".to_vec()),
    ]
}

fn sql_filter_seeds() -> Vec<(String, Vec<u8>)> {
    let message = format_properties([("a", "5"), ("b", "abc"), ("price", "9.5"), ("TAGS", "A")]);
    let with = |expression: &str| {
        let mut input = expression.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(message.as_bytes());
        input
    };
    vec![
        ("compare_numbers".into(), with("a > 3 AND price < 9.6")),
        ("compare_strings".into(), with("b = 'abc' OR b <> 'x'")),
        (
            "between_in".into(),
            with("a BETWEEN 1 AND 9 AND TAGS IN ('A', 'B')"),
        ),
        (
            "not_between".into(),
            with("a NOT BETWEEN 6 AND 7 OR -a < 0"),
        ),
        (
            "text_tests".into(),
            with("b CONTAINS 'b' AND b STARTSWITH 'a' AND b NOT ENDSWITH 'x'"),
        ),
        (
            "null_tests".into(),
            with("missing IS NULL AND a IS NOT NULL"),
        ),
        (
            "booleans".into(),
            with("(TRUE OR FALSE) AND NOT (a = 4) AND flag"),
        ),
        ("comments_and_long".into(), with("/* c */ a = 5L -- tail")),
        (
            "decimal_exponent".into(),
            with("price >= 1.5E0 AND price <> 1e308"),
        ),
        (
            "nested".into(),
            with(&format!("{}a = 5{}", "(".repeat(60), ")".repeat(60))),
        ),
        ("bad_octal".into(), with("a = 0123")),
        ("bad_order".into(), with("a BETWEEN 9 AND 1")),
        ("bad_string_order".into(), with("'x' > 'y'")),
        // Longer than the operand limit: refused (a long enough chain overflowed the stack).
        ("long_chain".into(), with(&vec!["a = 1"; 300].join(" OR "))),
    ]
}

fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus directory")
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    files.sort();
    files
}

/// Checks the built seeds are on disk (writing them first when asked) and returns the files.
fn corpus(target: &str, seeds: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    if std::env::var_os("TRIBUTARY_WRITE_ROCKETMQ_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("write seed");
        }
    }
    let on_disk = files(&dir);
    for (name, bytes) in &seeds {
        let file = format!("{name}.bin");
        let found = on_disk.iter().find(|(n, _)| *n == file).map(|(_, b)| b);
        assert_eq!(
            found,
            Some(bytes),
            "{target}/{file} is not what the builder makes"
        );
    }
    on_disk
}

/// Runs `check` on `data`, its prefixes and deterministic byte mutations.
fn replay(data: &[u8], check: fn(&[u8])) {
    let mut state = 0x2545_F491_4F6C_DD1Du64 ^ data.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    check(data);
    for cut in 0..data.len().min(64) {
        check(&data[..cut]);
    }
    if data.is_empty() {
        return;
    }
    for _ in 0..300 {
        let mut mutated = data.to_vec();
        let at = (next() as usize) % mutated.len();
        mutated[at] ^= (next() as u8) | 1;
        check(&mutated);
    }
}

#[test]
fn message_body_corpus_replays_with_mutations() {
    let files = corpus("message_body", message_body_seeds());
    assert!(files.len() >= 8);
    for (_, data) in &files {
        replay(data, check_message_body);
    }
}

#[test]
fn sql_filter_corpus_replays_with_mutations() {
    let files = corpus("sql_filter", sql_filter_seeds());
    assert!(files.len() >= 14);
    for (_, data) in &files {
        replay(data, check_sql_filter);
    }
}
