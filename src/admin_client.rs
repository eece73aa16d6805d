//! A small blocking HTTP/1.1 client for the broker's own admin API, used by the `tributary
//! user|vhost|permissions` commands while a broker holds the data directory (and by tests).
//!
//! Invariants: one request per connection (`Connection: close`); only `http://host:port`
//! URLs (the admin listener speaks plain HTTP, usually on loopback); a response body is read
//! to at most [`MAX_RESPONSE_BYTES`]; path segments are percent-encoded here, so a vhost `/`
//! is sent as `%2F`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;

/// Connect, read and write limit of one request.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted (a definitions export of a big broker fits).
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// Where the admin API is and who calls it.
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// `host:port`
    authority: String,
    authorization: String,
}

/// One answer: the status and the body parsed as JSON (`null` when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    /// The RabbitMQ-style `reason` of an error answer, or the body.
    pub fn reason(&self) -> String {
        match self.body.get("reason").and_then(|r| r.as_str()) {
            Some(reason) => reason.to_owned(),
            None => self.body.to_string(),
        }
    }
}

/// Percent-encodes one path segment (everything but RFC 3986's unreserved characters).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `/api/` followed by the encoded segments.
pub fn api_path(segments: &[&str]) -> String {
    let encoded: Vec<String> = segments.iter().map(|s| encode_segment(s)).collect();
    format!("/api/{}", encoded.join("/"))
}

impl AdminClient {
    /// `url` is `http://host:port` (a trailing `/` is fine).
    pub fn new(url: &str, user: &str, password: &str) -> anyhow::Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("the admin URL must start with http:// (got `{url}`)");
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            bail!("the admin URL is http://host:port (got `{url}`)");
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Ok(Self {
            authority: authority.to_owned(),
            authorization: format!("Basic {token}"),
        })
    }

    /// Sends one request; `path` starts with `/` (see [`api_path`]).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<Answer> {
        let addr = self
            .authority
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", self.authority))?
            .next()
            .with_context(|| format!("no address for {}", self.authority))?;
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .with_context(|| format!("cannot connect to the admin API at {addr}"))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.authority,
            self.authorization,
            payload.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(payload.as_bytes())?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE_BYTES + 1)
            .read_to_end(&mut raw)
            .context("cannot read the admin API's answer")?;
        if raw.len() as u64 > MAX_RESPONSE_BYTES {
            bail!("the admin API's answer is over {MAX_RESPONSE_BYTES} bytes");
        }
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Answer> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the admin API's answer has no header end")?;
    let head = std::str::from_utf8(&raw[..split]).context("the answer's header is not UTF-8")?;
    let mut body = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("the answer has no status code")?;
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
            && let Ok(length) = value.trim().parse::<usize>()
        {
            body = &body[..length.min(body.len())];
        }
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body).context("the admin API's answer is not JSON")?
    };
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_answers() {
        assert_eq!(
            api_path(&["permissions", "/", "a b"]),
            "/api/permissions/%2F/a%20b"
        );
        let answer = parse_response(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 17\r\n\r\n{\"reason\":\"gone\"}",
        )
        .unwrap();
        assert_eq!(answer.status, 404);
        assert_eq!(answer.reason(), "gone");
        assert!(AdminClient::new("https://x:1", "u", "p").is_err());
        assert!(AdminClient::new("http://127.0.0.1:9464/", "u", "p").is_ok());
    }
}
