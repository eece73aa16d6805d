//! The expected forms of docs/interop.md, computed from the spec's tables: a neutral record
//! (what a Kafka producer writes, or what an AMQP or RocketMQ write is stored as) and how an
//! AMQP or RocketMQ reader must see it. Nothing here asks the broker.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

/// One record header: name, and value bytes or null.
pub(crate) type Header = (String, Option<Vec<u8>>);

/// A stored record as the spec's "stored form" describes it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Record {
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) timestamp: i64,
    pub(crate) headers: Vec<Header>,
}

/// Reserved headers: seen by Kafka readers, never by AMQP or RocketMQ readers.
pub(crate) fn is_reserved(name: &str) -> bool {
    matches!(name, "amqp.props" | "amqp.exchange" | "queue.priority") || name.starts_with("rmq.")
}

/// AMQP read form: the routing key, and the `x-key` header when the key cannot be one.
pub(crate) fn amqp_routing_key(key: Option<&[u8]>) -> (String, Option<Vec<u8>>) {
    match key {
        None => (String::new(), None),
        Some(key) => match std::str::from_utf8(key) {
            Ok(text) if key.len() <= 255 => (text.to_owned(), None),
            _ => (String::new(), Some(key.to_vec())),
        },
    }
}

/// AMQP read form of a foreign record's headers: every header that is not reserved, a null
/// as void, a repeated name as one array of its values (lapin keeps tables as sorted maps, so
/// the position of the first occurrence cannot be observed here).
pub(crate) fn amqp_headers_table(headers: &[Header]) -> BTreeMap<String, AMQPValue> {
    let mut grouped: Vec<(String, Vec<AMQPValue>)> = Vec::new();
    for (name, value) in headers.iter().filter(|(name, _)| !is_reserved(name)) {
        let value = match value {
            Some(bytes) => AMQPValue::LongString(LongString::from(bytes.clone())),
            None => AMQPValue::Void,
        };
        match grouped.iter_mut().find(|(seen, _)| seen == name) {
            Some((_, values)) => values.push(value),
            None => grouped.push((name.clone(), vec![value])),
        }
    }
    grouped
        .into_iter()
        .map(|(name, mut values)| {
            let value = if values.len() == 1 {
                values.remove(0)
            } else {
                AMQPValue::FieldArray(values.into())
            };
            (name, value)
        })
        .collect()
}

/// The RocketMQ escape of a property name or value (`=?b64?` + base64, `=?null?`).
pub(crate) fn rocketmq_escape(value: Option<&[u8]>) -> String {
    let Some(bytes) = value else {
        return "=?null?".to_owned();
    };
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text.is_empty()
                && !bytes.iter().any(|b| matches!(b, 0..=2))
                && !text.starts_with("=?b64?")
                && text != "=?null?" =>
        {
            text.to_owned()
        }
        _ => format!("=?b64?{}", STANDARD.encode(bytes)),
    }
}

/// RocketMQ read form of a record's properties: non-reserved headers escaped, repeated names
/// suffixed `#2`, `#3`..., and the key as `KEYS` when no `KEYS` header exists. A JSON value
/// stays JSON (its text needs no escape).
pub(crate) fn rocketmq_properties(
    headers: &[(String, Expected)],
    key: Option<&[u8]>,
) -> HashMap<String, Expected> {
    let mut out = HashMap::new();
    let mut occurrences: HashMap<String, usize> = HashMap::new();
    let mut has_keys = false;
    for (name, value) in headers.iter().filter(|(name, _)| !is_reserved(name)) {
        has_keys |= name == "KEYS";
        let name = rocketmq_escape(Some(name.as_bytes()));
        let seen = occurrences.entry(name.clone()).or_insert(0);
        *seen += 1;
        let name = if *seen == 1 {
            name
        } else {
            format!("{name}#{seen}")
        };
        let value = match value {
            Expected::Bytes(bytes) => escaped(bytes.as_deref()),
            json @ Expected::Json(_) => json.clone(),
        };
        out.insert(name, value);
    }
    if let (Some(key), false) = (key, has_keys) {
        out.insert("KEYS".to_owned(), escaped(Some(key)));
    }
    out
}

fn escaped(value: Option<&[u8]>) -> Expected {
    Expected::Bytes(Some(rocketmq_escape(value).into_bytes()))
}

/// Headers as exact expected values.
pub(crate) fn exact(headers: &[Header]) -> Vec<(String, Expected)> {
    headers
        .iter()
        .map(|(name, value)| (name.clone(), Expected::Bytes(value.clone())))
        .collect()
}

/// How many names and values of `headers` (and the key, as `KEYS`) the RocketMQ read form
/// escapes.
pub(crate) fn rocketmq_escapes(headers: &[Header], key: Option<&[u8]>) -> usize {
    let escapes =
        |value: Option<&[u8]>| usize::from(Some(rocketmq_escape(value).as_bytes()) != value);
    let plain: Vec<&Header> = headers
        .iter()
        .filter(|(name, _)| !is_reserved(name))
        .collect();
    let from_headers: usize = plain
        .iter()
        .map(|(name, value)| escapes(Some(name.as_bytes())) + escapes(value.as_deref()))
        .sum();
    let key_escape = match key {
        Some(key) if !plain.iter().any(|(name, _)| name == "KEYS") => escapes(Some(key)),
        _ => 0,
    };
    from_headers + key_escape
}

/// An expected header value: exact bytes, or JSON compared by meaning (nested tables).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expected {
    Bytes(Option<Vec<u8>>),
    Json(serde_json::Value),
}

impl Expected {
    pub(crate) fn matches(&self, actual: Option<&[u8]>) -> bool {
        match self {
            Self::Bytes(bytes) => bytes.as_deref() == actual,
            Self::Json(json) => actual
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(bytes).ok())
                .is_some_and(|parsed| &parsed == json),
        }
    }
}

fn text(value: impl ToString) -> Expected {
    Expected::Bytes(Some(value.to_string().into_bytes()))
}

/// The stored headers an AMQP publish gives: the `headers` table in the order lapin sends it
/// (sorted names), then one header per set basic property, in the AMQP property order.
pub(crate) fn amqp_publish_headers(properties: &BasicProperties) -> Vec<(String, Expected)> {
    let mut out = Vec::new();
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            match value {
                AMQPValue::FieldArray(elements) => {
                    for element in elements.as_slice() {
                        out.push((name.to_string(), array_element(element)));
                    }
                }
                other => out.push((name.to_string(), field_text(other))),
            }
        }
    }
    let short = |value: &Option<lapin::types::ShortString>| value.as_ref().map(|v| v.to_string());
    let properties_text = [
        ("amqp.content-type", short(properties.content_type())),
        (
            "amqp.content-encoding",
            short(properties.content_encoding()),
        ),
        (
            "amqp.delivery-mode",
            properties.delivery_mode().map(|v| v.to_string()),
        ),
        (
            "amqp.priority",
            properties.priority().map(|v| v.to_string()),
        ),
        ("amqp.correlation-id", short(properties.correlation_id())),
        ("amqp.reply-to", short(properties.reply_to())),
        ("amqp.expiration", short(properties.expiration())),
        ("amqp.message-id", short(properties.message_id())),
        ("amqp.type", short(properties.kind())),
        ("amqp.user-id", short(properties.user_id())),
        ("amqp.app-id", short(properties.app_id())),
        ("amqp.cluster-id", short(properties.cluster_id())),
    ];
    for (name, value) in properties_text {
        if let Some(value) = value {
            out.push((name.to_owned(), text(value)));
        }
    }
    out
}

fn array_element(value: &AMQPValue) -> Expected {
    match value {
        AMQPValue::FieldArray(_) | AMQPValue::FieldTable(_) => Expected::Json(json(value)),
        other => field_text(other),
    }
}

/// The text form of one table value (docs/interop.md, "AMQP headers table values").
fn field_text(value: &AMQPValue) -> Expected {
    match value {
        AMQPValue::LongString(bytes) => Expected::Bytes(Some(bytes.as_bytes().to_vec())),
        AMQPValue::ByteArray(bytes) => Expected::Bytes(Some(bytes.as_slice().to_vec())),
        AMQPValue::ShortString(text_value) => text(text_value.as_str()),
        AMQPValue::Boolean(b) => text(b),
        AMQPValue::ShortShortInt(n) => text(n),
        AMQPValue::ShortShortUInt(n) => text(n),
        AMQPValue::ShortInt(n) => text(n),
        AMQPValue::ShortUInt(n) => text(n),
        AMQPValue::LongInt(n) => text(n),
        AMQPValue::LongUInt(n) => text(n),
        AMQPValue::LongLongInt(n) => text(n),
        // Rust's Display is the shortest text that reads back to the same f32 / f64.
        AMQPValue::Float(f) => text(f),
        AMQPValue::Double(d) => text(d),
        AMQPValue::DecimalValue(decimal) => text(decimal_text(decimal.value, decimal.scale)),
        AMQPValue::Timestamp(seconds) => text(seconds),
        AMQPValue::Void => Expected::Bytes(None),
        AMQPValue::FieldTable(_) | AMQPValue::FieldArray(_) => Expected::Json(json(value)),
    }
}

fn decimal_text(value: u32, scale: u8) -> String {
    let digits = value.to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{whole}.{fraction}")
}

/// The JSON form of nested tables and arrays.
pub(crate) fn json(value: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    let bytes_json = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => serde_json::json!({ "base64": STANDARD.encode(bytes) }),
    };
    match value {
        AMQPValue::FieldTable(table) => Value::Object(
            table
                .inner()
                .iter()
                .map(|(name, value)| (name.to_string(), json(value)))
                .collect(),
        ),
        AMQPValue::FieldArray(array) => Value::Array(array.as_slice().iter().map(json).collect()),
        AMQPValue::LongString(bytes) => bytes_json(bytes.as_bytes()),
        AMQPValue::ByteArray(bytes) => bytes_json(bytes.as_slice()),
        AMQPValue::ShortString(text_value) => Value::String(text_value.to_string()),
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        AMQPValue::Float(f) => serde_json::json!(f64::from(*f)),
        AMQPValue::Double(d) => serde_json::json!(d),
        AMQPValue::DecimalValue(_) => panic!("the suite puts no decimals inside nested tables"),
        AMQPValue::Void => Value::Null,
    }
}

/// A field table from `(name, value)` pairs.
pub(crate) fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut out = FieldTable::default();
    for (name, value) in entries {
        out.insert(name.into(), value);
    }
    out
}

/// A long-string table value holding `bytes` as they are.
pub(crate) fn long(bytes: impl Into<Vec<u8>>) -> AMQPValue {
    AMQPValue::LongString(LongString::from(bytes.into()))
}

/// True when `actual` properties are exactly the `expected` names with matching values.
pub(crate) fn properties_match(
    actual: &HashMap<String, String>,
    expected: &HashMap<String, Expected>,
) -> bool {
    actual.len() == expected.len()
        && expected.iter().all(|(name, value)| {
            actual
                .get(name)
                .is_some_and(|got| value.matches(Some(got.as_bytes())))
        })
}

/// True when `actual` headers are `expected`, in order.
pub(crate) fn headers_match(actual: &[Header], expected: &[(String, Expected)]) -> bool {
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|((name, value), (want_name, want))| {
                name == want_name && want.matches(value.as_deref())
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_rule_matches_the_spec_examples() {
        assert_eq!(rocketmq_escape(Some(b"plain")), "plain");
        assert_eq!(rocketmq_escape(None), "=?null?");
        assert_eq!(rocketmq_escape(Some(b"")), "=?b64?");
        assert_eq!(rocketmq_escape(Some(b"a\x01b")), "=?b64?YQFi");
        assert_eq!(rocketmq_escape(Some(b"=?null?")), "=?b64?PT9udWxsPw==");
        assert_eq!(rocketmq_escape(Some(&[0xFF])), "=?b64?/w==");
        assert_eq!(decimal_text(12345, 2), "123.45");
        assert_eq!(decimal_text(5, 3), "0.005");
        assert_eq!(decimal_text(7, 0), "7");
    }

    #[test]
    fn repeated_names_get_suffixes_and_the_key_becomes_keys() {
        let headers = vec![
            ("h".to_owned(), Some(b"1".to_vec())),
            ("h".to_owned(), None),
            ("amqp.props".to_owned(), Some(b"x".to_vec())),
        ];
        let properties = rocketmq_properties(&exact(&headers), Some(b"k"));
        let expected: HashMap<String, Expected> = [("h", "1"), ("h#2", "=?null?"), ("KEYS", "k")]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), Expected::Bytes(Some(v.as_bytes().to_vec()))))
            .collect();
        assert_eq!(properties, expected);
    }
}
