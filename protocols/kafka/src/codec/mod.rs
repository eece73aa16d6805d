//! Kafka request framing, sans-IO: bytes in, typed requests out; typed responses in, bytes out.
//!
//! Wire format: every request and response is a 4-byte big-endian size followed by that many
//! bytes. A request starts with `api_key i16, api_version i16, correlation_id i32`, then the rest
//! of the request header (v1: nullable `client_id`; v2 adds tagged fields; the header version
//! depends on the key *and* the version), then the body. A response is the correlation id
//! (response header v0, plus tagged fields in v1), then the body.
//!
//! Invariants: [`split_frame`] returns `Ok(None)` and leaves the buffer untouched until a whole
//! frame is there, and refuses a declared size over the limit before reserving memory for it;
//! [`route`] decodes a body only for a key and version listed in [`SUPPORTED_APIS`], except that
//! an ApiVersions request above our range gets the KIP-511 fallback (a v0 answer with
//! UNSUPPORTED_VERSION and our ranges) instead of a decode; and a body reaches the
//! `kafka-protocol` decoder only after [`bounds::check`] found no length prefix claiming more
//! than the frame holds (the crate reserves memory from such claims).

mod apis;
mod bounds;
mod schemas;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tributary_api::FrameLimits;

pub use apis::{KafkaRequest, KafkaResponse, SUPPORTED_APIS, SupportedApi, supported};
pub use bounds::{DECODE_ALLOWANCE, LengthFault, MAX_DECODE_AMPLIFICATION, MAX_DECODED_BYTES};

/// Bytes of the size prefix.
pub const SIZE_PREFIX_LEN: usize = 4;
/// `api_key`, `api_version` and `correlation_id`: the least a request can hold.
pub const MIN_REQUEST_LEN: usize = 8;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("request of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("request size {0} is too small to hold a request header")]
    FrameTooShort(i32),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} is not served by this broker")]
    UnsupportedApi { api: ApiKey },
    #[error("{api:?} v{version} is outside the advertised range {min}..={max}")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {api:?} v{version} request")]
    Malformed {
        api: ApiKey,
        version: i16,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{api:?} v{version} refused before decoding: `{field}` {fault}")]
    LengthRefused {
        api: ApiKey,
        version: i16,
        field: &'static str,
        fault: LengthFault,
    },
    #[error("could not encode the {api:?} v{version} response")]
    Encode {
        api: ApiKey,
        version: i16,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// One request frame, size prefix removed, with the fixed leading fields peeked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    /// The whole request, header included.
    pub frame: Bytes,
}

/// The size of the frame starting `buf`, its size prefix included, once the prefix is there
/// (`None` for a negative size, which [`split_frame`] refuses).
pub fn declared_frame_bytes(buf: &[u8]) -> Option<usize> {
    let size_bytes = buf.get(..SIZE_PREFIX_LEN)?;
    let declared = i32::from_be_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]]);
    usize::try_from(declared)
        .ok()
        .map(|size| size.saturating_add(SIZE_PREFIX_LEN))
}

/// Takes one whole request frame off the front of `buf`, or `Ok(None)` if it is not all there.
pub fn split_frame(
    buf: &mut BytesMut,
    limits: FrameLimits,
) -> Result<Option<RawRequest>, CodecError> {
    let Some(size_bytes) = buf.get(..SIZE_PREFIX_LEN) else {
        return Ok(None);
    };
    let declared = i32::from_be_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]]);
    let size = usize::try_from(declared).map_err(|_| CodecError::FrameTooShort(declared))?;
    if size < MIN_REQUEST_LEN {
        return Err(CodecError::FrameTooShort(declared));
    }
    let total = size.saturating_add(SIZE_PREFIX_LEN);
    if total > limits.max_frame_bytes {
        return Err(CodecError::FrameTooLarge {
            size: total,
            limit: limits.max_frame_bytes,
        });
    }
    if buf.len() < total {
        // Nothing is reserved for the rest: the caller grows the buffer as bytes arrive, so a
        // size prefix alone costs no memory.
        return Ok(None);
    }
    buf.advance(SIZE_PREFIX_LEN);
    let frame = buf.split_to(size).freeze();
    let mut fixed = &frame[..MIN_REQUEST_LEN];
    Ok(Some(RawRequest {
        api_key: fixed.get_i16(),
        api_version: fixed.get_i16(),
        correlation_id: fixed.get_i32(),
        frame,
    }))
}

/// Takes one raw SASL token (a size prefix and that many bytes, no request header) off the front
/// of `buf`, or `Ok(None)` if it is not all there. Only used after a SaslHandshake v0.
pub fn split_raw_token(
    buf: &mut BytesMut,
    limits: FrameLimits,
) -> Result<Option<Bytes>, CodecError> {
    let Some(size_bytes) = buf.get(..SIZE_PREFIX_LEN) else {
        return Ok(None);
    };
    let declared = i32::from_be_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]]);
    let size = usize::try_from(declared).map_err(|_| CodecError::FrameTooShort(declared))?;
    let total = size.saturating_add(SIZE_PREFIX_LEN);
    if total > limits.max_frame_bytes {
        return Err(CodecError::FrameTooLarge {
            size: total,
            limit: limits.max_frame_bytes,
        });
    }
    if buf.len() < total {
        // Nothing is reserved for the rest: the caller grows the buffer as bytes arrive, so a
        // size prefix alone costs no memory.
        return Ok(None);
    }
    buf.advance(SIZE_PREFIX_LEN);
    Ok(Some(buf.split_to(size).freeze()))
}

/// A request that passed the firewall.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// A supported key and version, decoded.
    Request {
        header: RequestHeader,
        api: ApiKey,
        version: i16,
        /// Boxed: request bodies vary widely in size.
        body: Box<KafkaRequest>,
    },
    /// An ApiVersions request newer than ours (KIP-511): answer v0 with UNSUPPORTED_VERSION and
    /// the supported ranges so the client retries with a version we know.
    ApiVersionsFallback { correlation_id: i32 },
}

/// Checks a frame's key and version against [`SUPPORTED_APIS`] and decodes it.
pub fn route(raw: RawRequest) -> Result<Routed, CodecError> {
    let api = ApiKey::try_from(raw.api_key).map_err(|()| CodecError::UnknownApiKey(raw.api_key))?;
    let Some(entry) = supported(api) else {
        return Err(CodecError::UnsupportedApi { api });
    };
    let version = raw.api_version;
    if api == ApiKey::ApiVersions && version > entry.max {
        return Ok(Routed::ApiVersionsFallback {
            correlation_id: raw.correlation_id,
        });
    }
    if !entry.supports(version) {
        return Err(CodecError::UnsupportedVersion {
            api,
            version,
            min: entry.min,
            max: entry.max,
        });
    }
    let malformed = |source| CodecError::Malformed {
        api,
        version,
        source,
    };
    let mut frame = raw.frame;
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|error| malformed(apis::anyhow_free::boxed(error)))?;
    bounds::check(api, version, &frame)?;
    let body = apis::decode_body(api, version, &mut frame)
        .ok_or(CodecError::UnsupportedApi { api })?
        .map_err(malformed)?;
    Ok(Routed::Request {
        header,
        api,
        version,
        body: Box::new(body),
    })
}

/// Encodes a size-prefixed response frame: header at `header_version`, body at `version`.
pub fn encode_response(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    body: &KafkaResponse,
) -> Result<Bytes, CodecError> {
    let api = body.api_key();
    let encode_failed = |source| CodecError::Encode {
        api,
        version,
        source,
    };
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .map_err(|error| encode_failed(apis::anyhow_free::boxed(error)))?;
    body.encode_body(&mut buf, version).map_err(encode_failed)?;
    let size =
        i32::try_from(buf.len() - SIZE_PREFIX_LEN).map_err(|error| encode_failed(error.into()))?;
    buf[..SIZE_PREFIX_LEN].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// The response header version of `api` at `version` (ApiVersions always uses v0).
pub fn response_header_version(api: ApiKey, version: i16) -> i16 {
    api.response_header_version(version)
}

#[cfg(test)]
mod tests;
