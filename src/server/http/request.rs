//! Reading admin API requests: path segments (percent-decoded, so `%2F` is the vhost `/`), the
//! query string, HTTP basic credentials and a JSON body of bounded size.
//!
//! Invariants: a body is never buffered past the limit (a `Content-Length` over it is refused
//! before reading, a chunked body is cut off at it); a path with invalid percent-encoding or
//! non-UTF-8 bytes is a 400, never a lossy name.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderMap};

use super::reply::ApiError;

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`, as in a path).
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let high = hex(*bytes.get(at + 1)?)?;
            let low = hex(*bytes.get(at + 2)?)?;
            out.push(high << 4 | low);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded segments of `path` after its leading `/` (a trailing `/` adds no segment).
pub(crate) fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    trimmed
        .split('/')
        .map(|segment| {
            percent_decode(segment)
                .ok_or_else(|| ApiError::bad_request("the path has invalid percent-encoding"))
        })
        .collect()
}

/// The value of `name` in a query string, decoded (`+` is a space there).
pub(crate) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(&value.replace('+', " ")))?
    })
}

/// The user and password of an `Authorization: Basic` header.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The whole body, refused with 413 past `limit` bytes.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {limit} bytes (http.max_body_bytes)"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(error) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {error}"
        ))),
    }
}

/// The body as JSON (an empty body is `{}`, as RabbitMQ takes it).
pub(crate) fn json_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_per_segment() {
        assert_eq!(
            segments("/api/queues/%2F/my%20q/").unwrap(),
            vec!["api", "queues", "/", "my q"]
        );
        assert!(segments("/api/queues/%2").is_err());
        assert!(segments("/api/queues/%ff").is_err(), "not UTF-8");
        assert!(segments("/").unwrap().is_empty());
        assert_eq!(
            query_value(Some("a=1&name=x+y%21"), "name").unwrap(),
            "x y!"
        );
        assert_eq!(query_value(Some("a=1"), "name"), None);
    }

    #[test]
    fn basic_credentials_parse() {
        let mut headers = HeaderMap::new();
        // guest:guest
        headers.insert(AUTHORIZATION, "Basic Z3Vlc3Q6Z3Vlc3Q=".parse().unwrap());
        assert_eq!(
            basic_credentials(&headers),
            Some(("guest".to_owned(), "guest".to_owned()))
        );
        headers.insert(AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&headers), None);
        headers.insert(AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(basic_credentials(&headers), None);
    }
}
