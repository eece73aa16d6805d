//! Metrics of the seam between protocols (docs/interop.md): batches a reader could not deliver
//! and RocketMQ properties escaped on the way out. Every frontend counts through these functions
//! so the names live here once; the shell registers [`CATALOG`].

use crate::telemetry::{MetricDescription, MetricKind, Unit, metric};

/// Batches a reader refused to deliver (labels `protocol`, `reason`); the reader's position
/// stayed before them.
pub const UNDELIVERABLE_BATCHES: &str = "tributary_interop_undeliverable_batches_total";
/// Header names or values escaped by the RocketMQ property rule of docs/interop.md.
pub const ESCAPED_PROPERTIES: &str = "tributary_interop_escaped_properties_total";

pub static CATALOG: &[MetricDescription] = &[
    metric(
        UNDELIVERABLE_BATCHES,
        MetricKind::Counter,
        Unit::Count,
        "Stored batches a reader could not decode or convert and refused to deliver",
    ),
    metric(
        ESCAPED_PROPERTIES,
        MetricKind::Counter,
        Unit::Count,
        "Header names or values escaped to be carried as RocketMQ properties",
    ),
];

/// Counts one batch `protocol`'s reader refused, for `reason` (a short static label such as
/// `decompress` or `properties_too_long`).
pub fn count_undeliverable(protocol: &'static str, reason: &'static str) {
    metrics::counter!(UNDELIVERABLE_BATCHES, "protocol" => protocol, "reason" => reason)
        .increment(1);
}

/// Counts `escaped` names or values escaped for RocketMQ readers.
pub fn count_escaped_properties(escaped: u64) {
    if escaped > 0 {
        metrics::counter!(ESCAPED_PROPERTIES).increment(escaped);
    }
}

/// Whether a record header is reserved (docs/interop.md, "Reserved headers"): kept for a
/// lossless same-protocol round trip, never shown by an AMQP reader as a header or by a
/// RocketMQ reader as a property. `amqp.expires` (an AMQP queue's expiry time) lives only in
/// AMQP queues.
pub fn is_reserved_header(name: &[u8]) -> bool {
    matches!(
        name,
        b"amqp.props" | b"amqp.exchange" | b"amqp.expires" | b"queue.priority"
    ) || name.starts_with(b"rmq.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_headers_are_the_documented_ones() {
        for name in [
            &b"amqp.props"[..],
            b"amqp.exchange",
            b"amqp.expires",
            b"queue.priority",
            b"rmq.born_host",
            b"rmq.",
        ] {
            assert!(is_reserved_header(name), "{name:?}");
        }
        for name in [&b"amqp.content-type"[..], b"rmq", b"KEYS", b"", b"x-rmq.a"] {
            assert!(!is_reserved_header(name), "{name:?}");
        }
    }
}
