//! Record headers as RocketMQ properties (docs/interop.md, "RocketMQ consumer"): the escape
//! rule for names and values RocketMQ cannot carry, `#2`, `#3` suffixes for repeated names, and
//! `KEYS` from the record key.
//!
//! Invariants: reserved headers never become properties; every other header does, in order;
//! a name or value is passed through unchanged unless it breaks RocketMQ's rules (not UTF-8,
//! holds 0x00, 0x01 or 0x02, is empty or null) or could be mistaken for an escape, so
//! [`unescape`] undoes [`escape`] for every input.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;
use tributary_api::Record;
use tributary_api::interop::is_reserved_header;

/// Starts an escaped name or value; standard base64 of its bytes follows.
pub const ESCAPE_PREFIX: &str = "=?b64?";
/// An escaped null value.
pub const ESCAPED_NULL: &str = "=?null?";
/// The property that carries a message's keys.
pub const PROPERTY_KEYS: &str = "KEYS";
/// Above this many headers, repeated names are counted through a map rather than a scan.
const SCAN_LIMIT: usize = 16;

/// A name or value as a RocketMQ property: borrowed when it needs no escape.
pub fn escape(bytes: Option<&[u8]>) -> Cow<'_, str> {
    let Some(bytes) = bytes else {
        return Cow::Borrowed(ESCAPED_NULL);
    };
    match std::str::from_utf8(bytes) {
        Ok(text) if !needs_escape(text) => Cow::Borrowed(text),
        _ => {
            let mut out = String::with_capacity(ESCAPE_PREFIX.len() + bytes.len().div_ceil(3) * 4);
            out.push_str(ESCAPE_PREFIX);
            base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut out);
            Cow::Owned(out)
        }
    }
}

fn needs_escape(text: &str) -> bool {
    text.is_empty()
        || text.starts_with(ESCAPE_PREFIX)
        || text == ESCAPED_NULL
        || text.bytes().any(|b| b <= 2)
}

/// The bytes a property name or value stands for: `None` for a null value, `Err` for an escape
/// that is not valid base64.
pub fn unescape(text: &str) -> Result<Option<Cow<'_, [u8]>>, base64::DecodeError> {
    if text == ESCAPED_NULL {
        return Ok(None);
    }
    match text.strip_prefix(ESCAPE_PREFIX) {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(|bytes| Some(Cow::Owned(bytes))),
        None => Ok(Some(Cow::Borrowed(text.as_bytes()))),
    }
}

/// Calls `each` with every property of `record` in order (escaped, repeated names suffixed,
/// `KEYS` from the key when no header is named so); returns how many names and values were
/// escaped.
pub fn for_each_property(record: &Record, mut each: impl FnMut(&str, &str)) -> u64 {
    let mut escaped = 0u64;
    let mut has_keys = false;
    let mut seen: Option<HashMap<&[u8], usize>> =
        (record.headers.len() > SCAN_LIMIT).then(HashMap::new);
    for (index, (name, value)) in record.headers.iter().enumerate() {
        if is_reserved_header(name) {
            continue;
        }
        has_keys |= name.as_ref() == PROPERTY_KEYS.as_bytes();
        let occurrence = match &mut seen {
            Some(seen) => {
                let count = seen.entry(name.as_ref()).or_default();
                *count += 1;
                *count
            }
            None => {
                1 + record.headers[..index]
                    .iter()
                    .filter(|(earlier, _)| earlier == name)
                    .count()
            }
        };
        let name_text = counted(Some(name), &mut escaped);
        let value_text = counted(value.as_deref(), &mut escaped);
        if occurrence == 1 {
            each(&name_text, &value_text);
        } else {
            each(&format!("{name_text}#{occurrence}"), &value_text);
        }
    }
    if !has_keys && let Some(key) = &record.key {
        let key_text = counted(Some(key), &mut escaped);
        each(PROPERTY_KEYS, &key_text);
    }
    escaped
}

/// [`escape`], counting an escape in `escaped` (only an escape allocates, a null is the marker).
fn counted<'a>(bytes: Option<&'a [u8]>, escaped: &mut u64) -> Cow<'a, str> {
    let text = escape(bytes);
    if bytes.is_none() || matches!(text, Cow::Owned(_)) {
        *escaped += 1;
    }
    text
}

/// The stored value of property `name` (unescaped, as filters match it): the first header of
/// that name whose value is UTF-8, or for `KEYS` the record key when no header has that name.
pub fn stored_property<'a>(record: &'a Record, name: &str) -> Option<&'a str> {
    if is_reserved_header(name.as_bytes()) {
        return None;
    }
    let mut named = record
        .headers
        .iter()
        .filter(|(key, _)| key.as_ref() == name.as_bytes())
        .peekable();
    if named.peek().is_none() && name == PROPERTY_KEYS {
        return record
            .key
            .as_deref()
            .and_then(|key| std::str::from_utf8(key).ok());
    }
    named.find_map(|(_, value)| std::str::from_utf8(value.as_deref()?).ok())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    fn record(key: Option<&[u8]>, headers: &[(&[u8], Option<&[u8]>)]) -> Record {
        Record {
            key: key.map(Bytes::copy_from_slice),
            value: None,
            timestamp: 0,
            headers: headers
                .iter()
                .map(|(n, v)| (Bytes::copy_from_slice(n), v.map(Bytes::copy_from_slice)))
                .collect(),
        }
    }

    fn properties(record: &Record) -> (Vec<(String, String)>, u64) {
        let mut out = Vec::new();
        let escaped = for_each_property(record, |n, v| out.push((n.to_owned(), v.to_owned())));
        (out, escaped)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn plain_text_passes_and_the_rest_is_escaped() {
        assert_eq!(escape(Some(b"TagA")), "TagA");
        assert!(matches!(escape(Some(b"TagA")), Cow::Borrowed(_)));
        assert_eq!(escape(None), "=?null?");
        assert_eq!(escape(Some(b"")), "=?b64?");
        assert_eq!(escape(Some(b"a\x01b")), "=?b64?YQFi");
        assert_eq!(escape(Some(&[0xff, 0xfe])), "=?b64?//4=");
        assert_eq!(escape(Some(b"=?null?")), "=?b64?PT9udWxsPw==");
        assert_eq!(escape(Some(b"=?b64?x")), "=?b64?PT9iNjQ/eA==");
        // Only the exact null marker and the prefix are escaped.
        assert_eq!(escape(Some(b"x=?b64?")), "x=?b64?");
        assert_eq!(unescape("=?b64?YQFi").unwrap().unwrap(), &b"a\x01b"[..]);
        assert!(unescape("=?b64?***").is_err());
    }

    #[test]
    fn reserved_hidden_duplicates_suffixed_keys_from_the_key() {
        let stored = record(
            Some(b"k1"),
            &[
                (b"h", Some(b"1")),
                (b"rmq.born_host", Some(b"1.2.3.4:5")),
                (b"amqp.props", Some(&[0, 0])),
                (b"h", None),
                (b"bin", Some(&[1, 2])),
                (b"h", Some(b"3")),
            ],
        );
        let (list, escaped) = properties(&stored);
        assert_eq!(
            list,
            pairs(&[
                ("h", "1"),
                ("h#2", "=?null?"),
                ("bin", "=?b64?AQI="),
                ("h#3", "3"),
                ("KEYS", "k1"),
            ])
        );
        assert_eq!(escaped, 2);
        assert_eq!(stored_property(&stored, "h"), Some("1"));
        assert_eq!(stored_property(&stored, "KEYS"), Some("k1"));
        assert_eq!(stored_property(&stored, "rmq.born_host"), None);
        assert_eq!(stored_property(&stored, "bin"), Some("\u{1}\u{2}"));
    }

    #[test]
    fn a_keys_header_wins_over_the_key_and_many_headers_count_alike() {
        let stored = record(Some(b"key"), &[(b"KEYS", Some(b"a b"))]);
        assert_eq!(properties(&stored).0, pairs(&[("KEYS", "a b")]));
        assert_eq!(stored_property(&stored, "KEYS"), Some("a b"));
        let many: Vec<(&[u8], Option<&[u8]>)> = (0..40)
            .map(|n| (if n % 2 == 0 { &b"x"[..] } else { b"y" }, Some(&b"v"[..])))
            .collect();
        let (list, _) = properties(&record(None, &many));
        assert_eq!(list[38].0, "x#20");
        assert_eq!(list[39].0, "y#20");
    }

    proptest! {
        #[test]
        fn unescape_undoes_escape(bytes in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))) {
            let text = escape(bytes.as_deref());
            prop_assert!(!text.is_empty());
            prop_assert!(!text.bytes().any(|b| b <= 2));
            let back = unescape(&text).unwrap();
            prop_assert_eq!(back.as_deref(), bytes.as_deref());
        }

        #[test]
        fn unescape_undoes_escape_for_text(text in "(=\\?b64\\?|=\\?null\\?|\\x00|\\x01|\\x02|[a-z]|é){0,8}") {
            let escaped = escape(Some(text.as_bytes()));
            let back = unescape(&escaped).unwrap().unwrap();
            prop_assert_eq!(back.as_ref(), text.as_bytes());
        }
    }
}
