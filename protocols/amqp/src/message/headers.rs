//! An AMQP message's properties as record headers, for readers of other protocols
//! (docs/interop.md, "AMQP `headers` table values as record headers" and "AMQP basic properties
//! as record headers").
//!
//! Invariants: entries of the `headers` table come first, in table order, then one `amqp.<name>`
//! header per set basic property (`timestamp` is the record timestamp, not a header); [`count`]
//! is exactly the number of headers [`push`] adds, so the caller allocates once; nothing is
//! allocated for a message without properties.

use std::fmt::Write as _;

use base64::Engine as _;
use bytes::Bytes;

use crate::codec::content::BasicProperties;
use crate::codec::table::{FieldTable, FieldValue};

/// A record header: name and value (null when absent).
pub(super) type Header = (Bytes, Option<Bytes>);

/// The short-string basic properties and the header each becomes.
fn text_properties(properties: &BasicProperties) -> [(&'static str, Option<&String>); 10] {
    [
        ("amqp.content-type", properties.content_type.as_ref()),
        (
            "amqp.content-encoding",
            properties.content_encoding.as_ref(),
        ),
        ("amqp.correlation-id", properties.correlation_id.as_ref()),
        ("amqp.reply-to", properties.reply_to.as_ref()),
        ("amqp.expiration", properties.expiration.as_ref()),
        ("amqp.message-id", properties.message_id.as_ref()),
        ("amqp.type", properties.kind.as_ref()),
        ("amqp.user-id", properties.user_id.as_ref()),
        ("amqp.app-id", properties.app_id.as_ref()),
        ("amqp.cluster-id", properties.cluster_id.as_ref()),
    ]
}

/// How many headers [`push`] adds for these properties.
pub(super) fn count(properties: &BasicProperties) -> usize {
    let table = properties.headers.as_ref().map_or(0, |table| {
        table
            .0
            .iter()
            .map(|(_, value)| match value {
                FieldValue::Array(values) => values.len(),
                _ => 1,
            })
            .sum()
    });
    let texts = text_properties(properties)
        .iter()
        .filter(|(_, value)| value.is_some())
        .count();
    table
        + texts
        + usize::from(properties.delivery_mode.is_some())
        + usize::from(properties.priority.is_some())
}

/// Appends the headers of the stored form: the `headers` table, then the basic properties.
pub(super) fn push(properties: &BasicProperties, out: &mut Vec<Header>) {
    if let Some(table) = &properties.headers {
        push_table(table, out);
    }
    let number = |name: &'static str, value: Option<u8>| {
        value.map(|v| (Bytes::from_static(name.as_bytes()), Some(decimal(v))))
    };
    // Property order as on the wire: content-type, content-encoding, delivery-mode, priority...
    let texts = text_properties(properties);
    let (first, rest) = texts.split_at(2);
    let text_header = |(name, value): &(&'static str, Option<&String>)| {
        value.map(|v| {
            (
                Bytes::from_static(name.as_bytes()),
                Some(Bytes::copy_from_slice(v.as_bytes())),
            )
        })
    };
    out.extend(first.iter().filter_map(text_header));
    out.extend(number("amqp.delivery-mode", properties.delivery_mode));
    out.extend(number("amqp.priority", properties.priority));
    out.extend(rest.iter().filter_map(text_header));
}

/// A delivery mode or priority as decimal text; the usual ones (0-9) without allocating.
fn decimal(value: u8) -> Bytes {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match DIGITS.get(usize::from(value)) {
        Some(digit) => Bytes::from_static(digit.as_bytes()),
        None => Bytes::from(value.to_string()),
    }
}

/// The entries of a `headers` table: arrays become one header per element.
fn push_table(table: &FieldTable, out: &mut Vec<Header>) {
    for (name, value) in &table.0 {
        let name = Bytes::copy_from_slice(name.as_bytes());
        match value {
            FieldValue::Array(values) => {
                out.extend(values.iter().map(|v| (name.clone(), header_value(v))));
            }
            other => out.push((name, header_value(other))),
        }
    }
}

/// A table value or array element in the text form: void is a null value, strings keep their
/// bytes, tables and arrays are JSON, every other type is its text.
pub(super) fn header_value(value: &FieldValue) -> Option<Bytes> {
    match value {
        FieldValue::Void => None,
        FieldValue::LongString(bytes) | FieldValue::ByteArray(bytes) => Some(bytes.clone()),
        FieldValue::Array(_) | FieldValue::Table(_) => {
            let mut json = String::new();
            write_json(value, &mut json);
            Some(Bytes::from(json))
        }
        scalar => {
            let mut text = String::new();
            write_scalar(scalar, &mut text);
            Some(Bytes::from(text))
        }
    }
}

/// Writes a number, boolean or timestamp as text; false for any other type.
fn write_scalar(value: &FieldValue, out: &mut String) -> bool {
    // Writing to a String cannot fail.
    let _ = match value {
        FieldValue::Bool(v) => write!(out, "{v}"),
        FieldValue::I8(v) => write!(out, "{v}"),
        FieldValue::U8(v) => write!(out, "{v}"),
        FieldValue::I16(v) => write!(out, "{v}"),
        FieldValue::U16(v) => write!(out, "{v}"),
        FieldValue::I32(v) => write!(out, "{v}"),
        FieldValue::U32(v) => write!(out, "{v}"),
        FieldValue::I64(v) => write!(out, "{v}"),
        FieldValue::U64(v) => write!(out, "{v}"),
        FieldValue::Timestamp(v) => write!(out, "{v}"),
        // Display prints the shortest digits that read back to the same value.
        FieldValue::F32(v) => write!(out, "{v}"),
        FieldValue::F64(v) => write!(out, "{v}"),
        FieldValue::Decimal { scale, value } => {
            write_decimal(*scale, *value, out);
            Ok(())
        }
        _ => return false,
    };
    true
}

/// `value` × 10^-`scale` in plain decimal notation (`12345`, 2 -> `123.45`; `5`, 3 -> `0.005`).
fn write_decimal(scale: u8, value: u32, out: &mut String) {
    let digits = value.to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(&digits);
    }
}

/// A value as JSON: tables are objects (entries in order), arrays are arrays, UTF-8 strings are
/// strings, other byte strings `{"base64": "..."}`, void `null`. Non-finite floats have no JSON
/// number and are the strings `"NaN"`, `"inf"`, `"-inf"`.
fn write_json(value: &FieldValue, out: &mut String) {
    match value {
        FieldValue::Void => out.push_str("null"),
        FieldValue::LongString(bytes) | FieldValue::ByteArray(bytes) => {
            match std::str::from_utf8(bytes) {
                Ok(text) => write_json_string(text, out),
                Err(_) => {
                    out.push_str("{\"base64\":\"");
                    base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
                    out.push_str("\"}");
                }
            }
        }
        FieldValue::Array(values) => {
            out.push('[');
            for (index, element) in values.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_json(element, out);
            }
            out.push(']');
        }
        FieldValue::Table(table) => {
            out.push('{');
            for (index, (name, element)) in table.0.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_json_string(name, out);
                out.push(':');
                write_json(element, out);
            }
            out.push('}');
        }
        FieldValue::F32(v) if !v.is_finite() => write_json_string(&v.to_string(), out),
        FieldValue::F64(v) if !v.is_finite() => write_json_string(&v.to_string(), out),
        scalar => {
            write_scalar(scalar, out);
        }
    }
}

fn write_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: FieldValue) -> Option<String> {
        header_value(&value).map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn scalars_have_the_documented_text() {
        assert_eq!(text(FieldValue::Bool(true)).unwrap(), "true");
        assert_eq!(text(FieldValue::I8(-42)).unwrap(), "-42");
        assert_eq!(
            text(FieldValue::U64(u64::MAX)).unwrap(),
            u64::MAX.to_string()
        );
        assert_eq!(text(FieldValue::F64(1.5)).unwrap(), "1.5");
        assert_eq!(text(FieldValue::F32(0.1)).unwrap(), "0.1");
        assert_eq!(text(FieldValue::F64(f64::NAN)).unwrap(), "NaN");
        assert_eq!(text(FieldValue::F64(f64::INFINITY)).unwrap(), "inf");
        let decimal = |scale, value| text(FieldValue::Decimal { scale, value }).unwrap();
        assert_eq!(decimal(2, 12345), "123.45");
        assert_eq!(decimal(3, 5), "0.005");
        assert_eq!(decimal(0, 7), "7");
        assert_eq!(decimal(2, 12), "0.12");
        assert_eq!(
            text(FieldValue::Timestamp(1_700_000_000)).unwrap(),
            "1700000000"
        );
        assert_eq!(text(FieldValue::Void), None);
        let binary = Bytes::from_static(&[0xff, 0x00, 0x01]);
        assert_eq!(
            header_value(&FieldValue::ByteArray(binary.clone())),
            Some(binary)
        );
    }

    #[test]
    fn small_numbers_are_static_and_others_are_text() {
        assert_eq!(decimal(7), Bytes::from_static(b"7"));
        assert_eq!(decimal(200), Bytes::from_static(b"200"));
    }

    #[test]
    fn tables_and_nested_arrays_are_json() {
        let mut inner = FieldTable::default();
        inner.insert("s", FieldValue::LongString(Bytes::from_static(b"a\"b\n")));
        inner.insert("bin", FieldValue::ByteArray(Bytes::from_static(&[0xff])));
        inner.insert("n", FieldValue::I32(-1));
        inner.insert(
            "d",
            FieldValue::Decimal {
                scale: 1,
                value: 15,
            },
        );
        inner.insert("nan", FieldValue::F64(f64::NAN));
        inner.insert("v", FieldValue::Void);
        inner.insert(
            "a",
            FieldValue::Array(vec![FieldValue::Bool(false), FieldValue::U8(3)]),
        );
        assert_eq!(
            text(FieldValue::Table(inner)).unwrap(),
            r#"{"s":"a\"b\n","bin":{"base64":"/w=="},"n":-1,"d":1.5,"nan":"NaN","v":null,"a":[false,3]}"#
        );
    }

    #[test]
    fn arrays_become_repeated_headers_and_properties_follow_the_table() {
        let mut table = FieldTable::default();
        table.insert(
            "multi",
            FieldValue::Array(vec![
                FieldValue::LongString(Bytes::from_static(b"x")),
                FieldValue::Void,
                FieldValue::Array(vec![FieldValue::I8(1)]),
            ]),
        );
        table.insert("empty", FieldValue::Array(vec![]));
        table.insert("one", FieldValue::I16(5));
        let properties = BasicProperties {
            content_type: Some("text/plain".into()),
            headers: Some(table),
            delivery_mode: Some(2),
            priority: Some(9),
            app_id: Some("app".into()),
            timestamp: Some(1),
            ..BasicProperties::default()
        };
        let mut out = Vec::new();
        push(&properties, &mut out);
        assert_eq!(out.len(), count(&properties));
        let shown: Vec<(&[u8], Option<&[u8]>)> = out
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                (&b"multi"[..], Some(&b"x"[..])),
                (b"multi", None),
                (b"multi", Some(b"[1]")),
                (b"one", Some(b"5")),
                (b"amqp.content-type", Some(b"text/plain")),
                (b"amqp.delivery-mode", Some(b"2")),
                (b"amqp.priority", Some(b"9")),
                (b"amqp.app-id", Some(b"app")),
            ]
        );
    }

    #[test]
    fn no_properties_no_headers() {
        let mut out = Vec::new();
        push(&BasicProperties::default(), &mut out);
        assert!(out.is_empty());
        assert_eq!(count(&BasicProperties::default()), 0);
    }
}
