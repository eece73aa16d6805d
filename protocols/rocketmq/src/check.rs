//! The properties the cargo-fuzz targets `message_body` and `sql_filter` (`fuzz/`) and the
//! corpus replay in `cargo test` check on arbitrary bytes.
//!
//! - [`check_message_body`]: the batch-body decoder, the properties-string parser and the
//!   record mapping behind a send accept or refuse any body without panicking; a decoded entry
//!   lies within the input; re-encoding the decoded entries decodes to the same entries; every
//!   property of the stored record reads back (escape and unescape are inverse).
//! - [`check_sql_filter`]: input up to the first NUL is a SQL92 expression, the rest a
//!   properties string; compiling and evaluating never panic (nor overflow the stack), and a
//!   compiled filter gives the same answer twice.
//!
//! Invariants: the checks do no I/O and are deterministic; the seed corpora
//! (`fuzz/corpus/message_body`, `fuzz/corpus/sql_filter`) are built by the test-only
//! `seed_corpus` functions and replayed with deterministic mutations.

use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;

use crate::codec::message::{decode_batch, encode_batch, parse_properties};
use crate::filter::SqlFilter;
use crate::records::IncomingMessage;
use crate::records::properties::{escape, for_each_property, stored_property, unescape};

/// Runs the message-body decoders over `data` (as a batch body and as a properties string).
pub fn check_message_body(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    if let Ok(entries) = decode_batch(&body) {
        let mut decoded_bytes = 0usize;
        for entry in &entries {
            decoded_bytes += 22 + entry.body.len() + entry.properties.len();
            check_properties(&entry.properties, entry.flag, &entry.body);
        }
        assert_eq!(
            decoded_bytes,
            data.len(),
            "decoded entries do not cover the body"
        );
        assert_eq!(
            decode_batch(&encode_batch(&entries)).as_ref(),
            Ok(&entries),
            "a batch does not round-trip"
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_properties(text, 0, &body);
    }
    // Any bytes as a header name or value become a property that reads back as those bytes.
    let escaped = escape(Some(data));
    let restored = unescape(&escaped).expect("an escape decodes");
    assert_eq!(
        restored.as_deref(),
        Some(data),
        "escape does not round-trip"
    );
}

/// Parses `text` as a message's properties, maps the message to a record and reads it back.
fn check_properties(text: &str, flag: i32, body: &Bytes) {
    let properties = parse_properties(text);
    let message = IncomingMessage {
        body: body.clone(),
        flag,
        sys_flag: 0,
        born_timestamp: 0,
        born_host: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
        reconsume_times: 0,
        properties,
    };
    if message.reserved_property().is_some() {
        return; // refused at send
    }
    let record = message.to_record(0);
    for (name, _) in &message.properties {
        // The first value of each name is what a filter sees.
        assert_eq!(
            stored_property(&record, name),
            message.property(name),
            "property {name:?} does not read back"
        );
    }
    for_each_property(&record, |name, value| {
        // A repeated name carries a `#n` suffix after its (possibly escaped) text.
        let base = match name.rsplit_once('#') {
            Some((base, count)) if count.parse::<u32>().is_ok_and(|n| n >= 2) => base,
            _ => name,
        };
        assert!(
            unescape(base).is_ok() || unescape(name).is_ok(),
            "property name {name:?} is a bad escape"
        );
        let _ = unescape(value);
    });
}

/// Compiles the expression in `data` (up to the first NUL) and evaluates it on the properties
/// string that follows.
pub fn check_sql_filter(data: &[u8]) {
    let (expression, rest) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(expression) = std::str::from_utf8(expression) else {
        return;
    };
    let Ok(filter) = SqlFilter::compile(expression) else {
        return;
    };
    let properties = parse_properties(&String::from_utf8_lossy(rest));
    let lookup = |name: &str| {
        properties
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let first = filter.matches(lookup);
    assert_eq!(
        first,
        filter.matches(lookup),
        "a filter is not deterministic"
    );
    assert_eq!(
        SqlFilter::compile(expression).as_ref(),
        Ok(&filter),
        "compiling is not deterministic"
    );
}

#[cfg(test)]
#[path = "check_seeds.rs"]
mod seeds;
