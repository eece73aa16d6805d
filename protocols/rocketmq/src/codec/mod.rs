//! The RocketMQ remoting frame codec, sans-IO: bytes in, [`RemotingCommand`]s out.
//!
//! Frame layout (all integers big-endian):
//!
//! ```text
//! u32 length                  bytes that follow this field = 4 + header length + body length
//! u8  serialize type          0 = JSON header, 1 = ROCKETMQ binary header
//! u24 header length
//! header                      JSON object (see `json`) or binary fields (see `binary`)
//! body                        the rest; its length is implicit
//! ```
//!
//! Invariants: the length prefix is checked against the configured limit before any buffer is
//! allocated for the frame; [`decode_frame`] returns `Ok(None)` on incomplete input and never
//! consumes bytes unless it returns a whole command; a response is encoded with the serialize type
//! of its request.

mod binary;
mod json;
pub mod message;

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// `flag` bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// `flag` bit 1: a one-way request, answered with nothing.
pub const FLAG_ONEWAY: i32 = 2;
/// The version ordinal stamped on every response (V5_3_3): clients gate features on it.
pub const SERVER_VERSION: i32 = 479;
/// Bytes of the length prefix.
const LENGTH_PREFIX: usize = 4;
/// Bytes of the serialize-type + header-length word.
const HEADER_WORD: usize = 4;

/// Why bytes are not a remoting frame. Every variant closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {declared} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { declared: usize, limit: usize },
    #[error("frame length {0} cannot hold the header-length word")]
    FrameTooShort(usize),
    #[error("header length {header} exceeds the frame body of {available} bytes")]
    HeaderOverrun { header: usize, available: usize },
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    #[error("malformed JSON header: {0}")]
    Json(String),
    #[error("malformed binary header: {0}")]
    Binary(&'static str),
}

/// How a command's header is serialised on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerializeType {
    Json,
    RocketMq,
}

impl SerializeType {
    fn from_byte(byte: u8) -> Result<Self, CodecError> {
        match byte {
            0 => Ok(Self::Json),
            1 => Ok(Self::RocketMq),
            other => Err(CodecError::UnknownSerializeType(other)),
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::Json => 0,
            Self::RocketMq => 1,
        }
    }
}

/// One request or response. `ext_fields` is the "custom header" of every request type, with all
/// values as strings (JSON numbers and booleans are stringified on decode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    pub code: i32,
    /// The `LanguageCode` ordinal; JSON names are mapped to ordinals on decode.
    pub language: u8,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: BTreeMap<String, String>,
    pub body: Bytes,
    pub serialize_type: SerializeType,
}

/// `LanguageCode` JAVA: what responses claim, since old Java clients reject names they lack.
pub const LANGUAGE_JAVA: u8 = 0;

impl RemotingCommand {
    /// About the bytes [`encode_frame`] writes for this command (for output budgets; the
    /// header's field names and JSON punctuation are estimated, not encoded).
    pub fn approx_encoded_len(&self) -> usize {
        let fields: usize = self
            .ext_fields
            .iter()
            .map(|(name, value)| name.len() + value.len() + 8)
            .sum();
        LENGTH_PREFIX
            + HEADER_WORD
            + 128
            + fields
            + self.remark.as_ref().map_or(0, String::len)
            + self.body.len()
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// A response to `request` with `code`: same opaque and serialize type, response bit set.
    pub fn response_to(request: &Self, code: i32) -> Self {
        Self {
            code,
            language: LANGUAGE_JAVA,
            version: SERVER_VERSION,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            remark: None,
            ext_fields: BTreeMap::new(),
            body: Bytes::new(),
            serialize_type: request.serialize_type,
        }
    }

    /// A request the broker originates (NOTIFY_CONSUMER_IDS_CHANGED and the like).
    pub fn request(code: i32, opaque: i32, serialize_type: SerializeType) -> Self {
        Self {
            code,
            language: LANGUAGE_JAVA,
            version: SERVER_VERSION,
            opaque,
            flag: 0,
            remark: None,
            ext_fields: BTreeMap::new(),
            body: Bytes::new(),
            serialize_type,
        }
    }

    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_field(mut self, name: &str, value: impl ToString) -> Self {
        self.ext_fields.insert(name.to_owned(), value.to_string());
        self
    }

    /// An extension field by name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.ext_fields.get(name).map(String::as_str)
    }
}

/// The size of the frame starting `buf`, its length prefix included, once the prefix is there.
pub fn declared_frame_bytes(buf: &[u8]) -> Option<usize> {
    let prefix = buf.get(..LENGTH_PREFIX)?;
    let mut word = [0u8; LENGTH_PREFIX];
    word.copy_from_slice(prefix);
    Some((u32::from_be_bytes(word) as usize).saturating_add(LENGTH_PREFIX))
}

/// Decodes one whole frame from the front of `buf`, or returns `Ok(None)` and leaves `buf`
/// untouched when more bytes are needed. `max_frame_bytes` bounds the frame including its prefix.
pub fn decode_frame(
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<RemotingCommand>, CodecError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX) else {
        return Ok(None);
    };
    let mut word = [0u8; LENGTH_PREFIX];
    word.copy_from_slice(prefix);
    let length = u32::from_be_bytes(word) as usize;
    let declared = length.saturating_add(LENGTH_PREFIX);
    if declared > max_frame_bytes {
        return Err(CodecError::FrameTooLarge {
            declared,
            limit: max_frame_bytes,
        });
    }
    if length < HEADER_WORD {
        return Err(CodecError::FrameTooShort(length));
    }
    if buf.len() < declared {
        // Nothing is reserved for the rest: the caller grows the buffer as bytes arrive, so a
        // length prefix alone costs no memory.
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX);
    let mut frame = buf.split_to(length).freeze();
    let type_and_len = frame.get_u32();
    let serialize_type = SerializeType::from_byte((type_and_len >> 24) as u8)?;
    let header_len = (type_and_len & 0x00FF_FFFF) as usize;
    if header_len > frame.len() {
        return Err(CodecError::HeaderOverrun {
            header: header_len,
            available: frame.len(),
        });
    }
    let header = frame.split_to(header_len);
    let mut command = match serialize_type {
        SerializeType::Json => json::decode_header(&header)?,
        SerializeType::RocketMq => binary::decode_header(&header)?,
    };
    command.body = frame;
    Ok(Some(command))
}

/// Appends the encoded frame of `command` to `out`.
pub fn encode_frame(command: &RemotingCommand, out: &mut BytesMut) {
    let header = match command.serialize_type {
        SerializeType::Json => json::encode_header(command),
        SerializeType::RocketMq => binary::encode_header(command),
    };
    let length = HEADER_WORD + header.len() + command.body.len();
    out.reserve(LENGTH_PREFIX + length);
    out.put_u32(length as u32);
    out.put_u32(
        (u32::from(command.serialize_type.byte()) << 24) | (header.len() as u32 & 0x00FF_FFFF),
    );
    out.extend_from_slice(&header);
    out.extend_from_slice(&command.body);
}

/// The decoder properties the fuzz target and the corpus replay check on arbitrary `data`: no
/// panic; an incomplete frame leaves the buffer as it was; a decoded frame fits the limit; the
/// body decoders (batch entries, properties) accept or refuse any body without panicking.
pub fn check_decoders(data: &[u8]) {
    const LIMIT: usize = 1 << 20;
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode_frame(&mut buf, LIMIT) {
            Ok(Some(command)) => {
                assert!(
                    before - buf.len() <= LIMIT,
                    "a frame over the limit was decoded"
                );
                let _ = message::decode_batch(&command.body);
                for value in command.ext_fields.values() {
                    let _ = message::parse_properties(value);
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame consumed input");
                break;
            }
            Err(_) => break,
        }
    }
}

/// The `LanguageCode` names in ordinal order (JSON headers carry the name).
const LANGUAGES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

/// Ordinal of a language name; unknown names count as OTHER.
fn language_ordinal(name: &str) -> u8 {
    LANGUAGES
        .iter()
        .position(|known| *known == name)
        .map_or(7, |index| index as u8)
}

fn language_name(ordinal: u8) -> &'static str {
    LANGUAGES
        .get(usize::from(ordinal))
        .copied()
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests;
