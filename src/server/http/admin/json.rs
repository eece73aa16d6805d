//! JSON <-> AMQP field tables (queue and exchange `arguments`), and reading typed fields out
//! of request bodies with a 400 naming the field when one has the wrong type.
//!
//! Mapping: strings are long strings, integers `I64` (or `U64` above `i64::MAX`), other
//! numbers `F64`, booleans, `null` is void, arrays and objects nest. Byte arrays, timestamps
//! and decimals have no JSON type: they are shown as text (`ByteArray` as UTF-8 where it is,
//! else hex) so a listing never fails; definitions re-imported from such text get strings.

use bytes::Bytes;
use serde_json::{Map, Value};
use tributary_amqp::codec::table::{FieldTable, FieldValue};

use crate::server::http::reply::ApiError;

/// Nesting deeper than this in `arguments` is refused (a field table's own bound).
const MAX_DEPTH: usize = 16;

pub(crate) fn table_to_json(table: &FieldTable) -> Value {
    let mut out = Map::new();
    for (name, value) in &table.0 {
        out.insert(name.clone(), value_to_json(value));
    }
    Value::Object(out)
}

fn value_to_json(value: &FieldValue) -> Value {
    match value {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(v) => Value::from(*v),
        FieldValue::U8(v) => Value::from(*v),
        FieldValue::I16(v) => Value::from(*v),
        FieldValue::U16(v) => Value::from(*v),
        FieldValue::I32(v) => Value::from(*v),
        FieldValue::U32(v) => Value::from(*v),
        FieldValue::I64(v) => Value::from(*v),
        FieldValue::U64(v) => Value::from(*v),
        FieldValue::F32(v) => Value::from(f64::from(*v)),
        FieldValue::F64(v) => Value::from(*v),
        FieldValue::Decimal { scale, value } => Value::String(format!("{}e-{scale}", value)),
        FieldValue::LongString(bytes) | FieldValue::ByteArray(bytes) => {
            match std::str::from_utf8(bytes) {
                Ok(text) => Value::String(text.to_owned()),
                Err(_) => Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
            }
        }
        FieldValue::Array(values) => Value::Array(values.iter().map(value_to_json).collect()),
        FieldValue::Timestamp(seconds) => Value::from(*seconds),
        FieldValue::Table(table) => table_to_json(table),
        FieldValue::Void => Value::Null,
    }
}

/// A JSON object as a field table; `null` or absent is the empty table.
pub(crate) fn json_to_table(value: Option<&Value>) -> Result<FieldTable, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(FieldTable::default()),
        Some(Value::Object(map)) => object_to_table(map, 0),
        Some(_) => Err(ApiError::bad_request("`arguments` must be an object")),
    }
}

fn object_to_table(map: &Map<String, Value>, depth: usize) -> Result<FieldTable, ApiError> {
    let mut table = FieldTable::default();
    for (name, value) in map {
        if name.len() > 255 {
            return Err(ApiError::bad_request(
                "an argument name has at most 255 bytes",
            ));
        }
        table.insert(name, json_to_value(value, depth + 1)?);
    }
    Ok(table)
}

fn json_to_value(value: &Value, depth: usize) -> Result<FieldValue, ApiError> {
    if depth > MAX_DEPTH {
        return Err(ApiError::bad_request("`arguments` nest too deep"));
    }
    Ok(match value {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => FieldValue::I64(i),
            (None, Some(u), _) => FieldValue::U64(u),
            (_, _, Some(f)) => FieldValue::F64(f),
            _ => {
                return Err(ApiError::bad_request(
                    "an argument is a number out of range",
                ));
            }
        },
        Value::String(s) => FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes())),
        Value::Array(values) => FieldValue::Array(
            values
                .iter()
                .map(|v| json_to_value(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => FieldValue::Table(object_to_table(map, depth)?),
    })
}

/// A boolean field of a request body, `default` when absent.
pub(crate) fn flag(body: &Value, name: &str, default: bool) -> Result<bool, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        // rabbitmqadmin v1 and some tools send "true"/"false" as strings.
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(ApiError::bad_request(format!("`{name}` must be a boolean"))),
    }
}

/// A string field of a request body.
pub(crate) fn string<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("`{name}` must be a string"))),
    }
}

/// A required string field of a request body.
pub(crate) fn required<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    string(body, name)?.ok_or_else(|| ApiError::bad_request(format!("`{name}` is required")))
}

/// An integer field of a request body.
pub(crate) fn integer(body: &Value, name: &str) -> Result<Option<i64>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("`{name}` must be an integer"))),
    }
}

/// The body must be a JSON object.
pub(crate) fn object(body: &Value) -> Result<(), ApiError> {
    match body {
        Value::Object(_) => Ok(()),
        _ => Err(ApiError::bad_request("the body must be a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_through_json() {
        let json = serde_json::json!({
            "x-max-length": 10, "x-queue-type": "quorum", "x-flag": true,
            "x-nested": {"a": [1, "b", null]}, "x-ratio": 0.5
        });
        let table = json_to_table(Some(&json)).unwrap();
        assert_eq!(table.get("x-max-length"), Some(&FieldValue::I64(10)));
        assert_eq!(table_to_json(&table), json);
        assert!(json_to_table(Some(&serde_json::json!([1]))).is_err());
        let mut deep = serde_json::json!(1);
        for _ in 0..40 {
            deep = serde_json::json!({ "d": deep });
        }
        assert!(json_to_table(Some(&deep)).is_err());
    }
}
