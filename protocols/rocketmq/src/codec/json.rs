//! The JSON header (serialize type 0): the fastjson form of the Java `RemotingCommand` bean,
//! `{"code":..,"language":"JAVA","version":..,"opaque":..,"flag":..,"remark":..,"extFields":{..}}`.
//!
//! Decoding is lenient the way clients need: unknown keys are ignored, `language` may be a name
//! or an ordinal, numeric fields may be numbers or numeric strings, and `extFields` values may be
//! any JSON scalar (ali-ons and the C++ client send numbers and booleans); they become strings.
//! Encoding always writes `extFields` values as JSON strings (the C++ client reads only strings)
//! and always writes `extFields`, `{}` at least (Java clients read it unconditionally).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{CodecError, RemotingCommand, SerializeType, language_name, language_ordinal};

pub(super) fn decode_header(header: &[u8]) -> Result<RemotingCommand, CodecError> {
    let value: Value =
        serde_json::from_slice(header).map_err(|err| CodecError::Json(err.to_string()))?;
    let Value::Object(object) = value else {
        return Err(CodecError::Json("header is not a JSON object".to_owned()));
    };
    let code = int_field(&object, "code")?.ok_or(CodecError::Json("no `code`".to_owned()))?;
    let language = match object.get("language") {
        Some(Value::String(name)) => language_ordinal(name),
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(7),
        _ => 7,
    };
    let remark = match object.get("remark") {
        Some(Value::String(text)) => Some(text.clone()),
        _ => None,
    };
    let mut ext_fields = BTreeMap::new();
    match object.get("extFields") {
        Some(Value::Object(fields)) => {
            for (name, value) in fields {
                if let Some(text) = scalar_text(value) {
                    ext_fields.insert(name.clone(), text);
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(CodecError::Json("`extFields` is not an object".to_owned())),
    }
    Ok(RemotingCommand {
        code,
        language,
        version: int_field(&object, "version")?.unwrap_or(0),
        opaque: int_field(&object, "opaque")?.unwrap_or(0),
        flag: int_field(&object, "flag")?.unwrap_or(0),
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

/// A JSON scalar as the string Java's fastjson coercion would give; `null` and containers drop.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn int_field(object: &Map<String, Value>, name: &str) -> Result<Option<i32>, CodecError> {
    let parsed = match object.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => number.as_i64().and_then(|n| i32::try_from(n).ok()),
        Some(Value::String(text)) => text.trim().parse::<i32>().ok(),
        Some(_) => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| CodecError::Json(format!("`{name}` is not a 32-bit integer")))
}

pub(super) fn encode_header(command: &RemotingCommand) -> Vec<u8> {
    let mut object = Map::new();
    object.insert("code".to_owned(), Value::from(command.code));
    let fields: Map<String, Value> = command
        .ext_fields
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    object.insert("extFields".to_owned(), Value::Object(fields));
    object.insert("flag".to_owned(), Value::from(command.flag));
    object.insert(
        "language".to_owned(),
        Value::from(language_name(command.language)),
    );
    object.insert("opaque".to_owned(), Value::from(command.opaque));
    if let Some(remark) = &command.remark {
        object.insert("remark".to_owned(), Value::String(remark.clone()));
    }
    object.insert("serializeTypeCurrentRPC".to_owned(), Value::from("JSON"));
    object.insert("version".to_owned(), Value::from(command.version));
    // A map of JSON values always serialises; the fallback keeps the function total.
    serde_json::to_vec(&Value::Object(object)).unwrap_or_else(|_| b"{}".to_vec())
}
