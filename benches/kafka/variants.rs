//! `cargo bench --bench kafka variants`: what producer settings cost on the broker, same client,
//! same run, interleaved on fresh brokers.
//!
//! - **Idempotence** (1 KiB values, acks=all): `enable.idempotence=true` against the same
//!   producer without it, on the default engine (`always`) and on the ceiling. The broker keeps
//!   producer state per partition and checks every batch's sequence; the ratio of idempotent to
//!   plain on the same backend is its cost.
//! - **Compression** (1 KiB text-like values, 1,024 distinct ones, acks=1): `none`, `gzip`,
//!   `snappy`, `lz4`, `zstd`. The broker inflates every compressed batch it accepts to check its
//!   records (offset deltas, count, timestamps), as Kafka's broker does; the ceiling runs that
//!   check too, so engine against ceiling is the storage cost per codec.
//! - **The check alone**: `check_produced` over a 1 MiB batch of the same values per codec, in
//!   this process: µs per MiB of records, beside the ceiling's produce time per MiB.

use std::time::Instant;

use bytes::Bytes;
use tokio::runtime::Runtime;
use tributary::broker::memory_log::MemoryLogMode;
use tributary_api::batch::{VerifiedBatch, build_batch, build_compressed_batch, check_produced};
use tributary_api::compression::Codec;
use tributary_api::{Durability, Record};

use super::{Backend, MIB, Throughput, median, min, produce_run_with, settle, start, stop};

const VALUE_LEN: usize = 1024;
const DISTINCT_VALUES: usize = 1024;

/// Text-like values (words from a small vocabulary, pseudo-random order): they compress about
/// as well as JSON or log lines do, unlike a repeated byte.
fn text_values() -> Vec<Vec<u8>> {
    const WORDS: [&str; 16] = [
        "order",
        "id",
        "status",
        "shipped",
        "customer",
        "amount",
        "currency",
        "EUR",
        "timestamp",
        "2026",
        "warehouse",
        "priority",
        "note",
        "true",
        "false",
        "null",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..DISTINCT_VALUES)
        .map(|_| {
            let mut value = Vec::with_capacity(VALUE_LEN + 16);
            while value.len() < VALUE_LEN {
                let word = WORDS[(next() % 16) as usize];
                value.extend_from_slice(word.as_bytes());
                value.push(if next() % 4 == 0 { b',' } else { b' ' });
                value.extend_from_slice((next() % 10_000).to_string().as_bytes());
                value.push(b' ');
            }
            value.truncate(VALUE_LEN);
            value
        })
        .collect()
}

struct Row {
    label: String,
    backend: Backend,
    settings: Vec<(&'static str, &'static str)>,
    runs: Vec<Throughput>,
}

impl Row {
    fn new(label: &str, backend: Backend, settings: &[(&'static str, &'static str)]) -> Self {
        Self {
            label: label.to_owned(),
            backend,
            settings: settings.to_vec(),
            runs: Vec::new(),
        }
    }

    fn records(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.records_per_s).collect()
    }

    fn mib(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.mib_per_s).collect()
    }
}

/// Runs every row once per round, rows interleaved, each on a fresh broker after a `sync`.
fn run_rows(runtime: &Runtime, rows: &mut [Row], values: &[Vec<u8>], repeats: usize) {
    for round in 0..repeats {
        for row in rows.iter_mut() {
            settle();
            let running = runtime.block_on(start(row.backend));
            let run = produce_run_with(running.addr, &row.settings, values);
            runtime.block_on(stop(running));
            eprintln!(
                "variants round {round} {}: {:.0} rec/s p99 {:.1} ms",
                row.label, run.records_per_s, run.p99_ms
            );
            row.runs.push(run);
        }
    }
}

/// Prints rows with the ratio of each to the row `reference(index)` names.
fn print_rows(title: &str, rows: &[Row], reference: impl Fn(usize) -> usize) {
    println!("\n{title}");
    println!(
        "| producer, backend | records/s median (min) | MiB/s median | p50 / p99 delivery ms at 5k rec/s | ratio | to |"
    );
    println!("|---|---|---|---|---|---|");
    for (index, row) in rows.iter().enumerate() {
        let base = &rows[reference(index)];
        let (records, p50, p99) = (
            row.records(),
            row.runs.iter().map(|r| r.p50_ms).collect::<Vec<_>>(),
            row.runs.iter().map(|r| r.p99_ms).collect::<Vec<_>>(),
        );
        println!(
            "| {} | {:.0} ({:.0}) | {:.1} | {:.1} / {:.1} | **{:.2}** | {} |",
            row.label,
            median(&records),
            min(&records),
            median(&row.mib()),
            median(&p50),
            median(&p99),
            median(&records) / median(&base.records()),
            base.label,
        );
    }
}

const ENGINE: Backend = Backend::Tributary(Durability::Always);
const CEILING: Backend = Backend::Ceiling(MemoryLogMode::Discard);

pub(super) fn bench_variants(runtime: &Runtime, repeats: usize) {
    let values = text_values();

    let plain = [("acks", "all")];
    let idempotent = [("acks", "all"), ("enable.idempotence", "true")];
    let mut rows = vec![
        Row::new("acks=all, tributary always", ENGINE, &plain),
        Row::new("acks=all idempotent, tributary always", ENGINE, &idempotent),
        Row::new("acks=all, ceiling", CEILING, &plain),
        Row::new("acks=all idempotent, ceiling", CEILING, &idempotent),
    ];
    run_rows(runtime, &mut rows, &values, repeats);
    print_rows(
        &format!("idempotence: {VALUE_LEN} B text-like values, linger.ms=5, {repeats} runs each"),
        &rows,
        |index| index & !1, // each idempotent row against the plain one on its backend
    );

    let codecs = [
        ("none", None),
        ("gzip", Some(Codec::Gzip)),
        ("snappy", Some(Codec::Snappy)),
        ("lz4", Some(Codec::Lz4)),
        ("zstd", Some(Codec::Zstd)),
    ];
    let mut rows = Vec::new();
    for (name, _) in codecs {
        let settings: &[(&str, &str)] = &[("acks", "1"), ("compression.type", name)];
        rows.push(Row::new(
            &format!("{name}, tributary always"),
            ENGINE,
            settings,
        ));
        rows.push(Row::new(&format!("{name}, ceiling"), CEILING, settings));
    }
    run_rows(runtime, &mut rows, &values, repeats);
    print_rows(
        &format!(
            "compression: {VALUE_LEN} B text-like values, acks=1, linger.ms=5, {repeats} runs each"
        ),
        &rows,
        |index| index | 1, // each engine row against the ceiling with the same codec
    );

    println!("\nthe broker's check of a produced 1 MiB batch (check_produced), in process");
    println!(
        "| codec | batch bytes | µs per MiB of records, median of 21 | ceiling produce time per MiB, same codec | share |"
    );
    println!("|---|---|---|---|---|");
    for (index, (name, codec)) in codecs.into_iter().enumerate() {
        let (batch, micros) = check_cost(codec, &values);
        let ceiling_mib = median(&rows[index * 2 + 1].mib());
        let ceiling_micros = 1e6 / ceiling_mib;
        println!(
            "| {name} | {} | {micros:.0} | {ceiling_micros:.0} µs | {:.1} % |",
            batch.len(),
            100.0 * micros / ceiling_micros
        );
    }
}

/// A 1 MiB batch of `values` in `codec` and the median time of `check_produced` on it, in µs
/// per MiB of record bytes.
fn check_cost(codec: Option<Codec>, values: &[Vec<u8>]) -> (Bytes, f64) {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            value: Some(Bytes::copy_from_slice(value)),
            timestamp: 1_700_000_000_000 + i as i64,
            ..Record::default()
        })
        .collect();
    let batch = match codec {
        None => build_batch(&records),
        Some(codec) => build_compressed_batch(&records, codec).expect("compress"),
    };
    let verified = VerifiedBatch::verify(batch.clone()).expect("valid batch");
    let record_mib = (values.len() * VALUE_LEN) as f64 / MIB;
    let mut samples = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        for _ in 0..10 {
            check_produced(&verified).expect("check passes");
        }
        let per_check = started.elapsed() / 10;
        samples.push(per_check.as_secs_f64() * 1e6 / record_mib);
    }
    (batch, median(&samples))
}
