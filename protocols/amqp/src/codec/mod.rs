//! Sans-IO AMQP 0-9-1 codec: bytes in, typed frames out, and encoders for what the server sends.
//!
//! Wire format (all integers big-endian):
//!
//! * Protocol header: the 8 bytes `"AMQP" 0 0 9 1`, only as the first bytes of a connection.
//! * Frame: `type: u8, channel: u16, size: u32, payload[size], 0xCE`. Types: 1 method, 2 content
//!   header, 3 content body, 8 heartbeat (channel 0, empty payload).
//! * Method payload: `class_id: u16, method_id: u16, arguments` ([`methods`]).
//! * Content header payload: `class_id: u16, weight: u16 (0), body_size: u64, property_flags:
//!   u16, property list` ([`content`]); the flags and list are kept as raw bytes.
//!
//! Invariants: [`decode_frame`] rejects a declared size above the negotiated `frame_max`
//! (`size + 8` bytes on the wire) before buffering or allocating anything for it, returns
//! `Ok(None)` on incomplete input and consumes exactly one frame otherwise. Body payloads are
//! handed out as `Bytes` slices of the read buffer, never copied.

pub mod check;
pub mod content;
pub mod methods;
pub mod table;
pub mod wire;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The only protocol header this server speaks; also what it answers a wrong header with.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Frame type octets.
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet closing every frame.
pub const FRAME_END: u8 = 0xCE;
/// Bytes a frame adds around its payload (7 header + 1 end).
pub const FRAME_OVERHEAD: usize = 8;
/// The smallest frame_max a peer may negotiate (AMQP 0-9-1 §4.2.3).
pub const FRAME_MIN_SIZE: u32 = 4096;

/// Why input is not acceptable AMQP 0-9-1. Frame errors read as RabbitMQ's do (`type 1, all
/// octets = <<...>>: {frame_too_large,...}`), since that text reaches the client's close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("type {frame_type}, all octets = <<>>: {{frame_too_large,{size},{}}}",
        (*.frame_max as usize).saturating_sub(FRAME_OVERHEAD))]
    FrameTooLarge {
        frame_type: u8,
        size: usize,
        frame_max: u32,
    },
    #[error("type {frame_type}, {payload}: {{invalid_frame_end_marker,{end}}}")]
    BadFrameEnd {
        frame_type: u8,
        payload: Octets,
        end: u8,
    },
    #[error("type {frame_type}, {payload}: unknown_frame")]
    UnknownFrameType { frame_type: u8, payload: Octets },
    #[error("arguments end early")]
    Truncated,
    #[error("short string is not UTF-8")]
    BadUtf8,
    #[error("unknown field type tag {0:#04x}")]
    BadFieldType(u8),
    #[error("field tables nested too deeply")]
    TooDeep,
    #[error("unknown method {class_id}/{method_id}")]
    UnknownMethod { class_id: u16, method_id: u16 },
    #[error("content header for class {0}, expected 60 (basic)")]
    BadContentClass(u16),
    #[error("property flags continuation is not supported")]
    PropertyContinuation,
    #[error("type 8, {payload}")]
    HeartbeatOnChannel { channel: u16, payload: Octets },
}

/// The start of a frame payload as RabbitMQ quotes it in frame errors: `all octets = <<...>>`,
/// or `first 16 octets = <<...>>` for a longer payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Octets {
    snippet: Bytes,
    truncated: bool,
}

impl Octets {
    const SNIPPET: usize = 16;

    pub fn of(payload: &[u8]) -> Self {
        let truncated = payload.len() > Self::SNIPPET;
        let snippet = Bytes::copy_from_slice(&payload[..payload.len().min(Self::SNIPPET)]);
        Self { snippet, truncated }
    }
}

impl std::fmt::Display for Octets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let which = if self.truncated { "first 16" } else { "all" };
        write!(f, "{which} octets = {}", ErlangBinary(&self.snippet))
    }
}

/// A binary written the way Erlang prints one: `<<"text">>` when every byte is printable
/// ASCII, else `<<0,60,...>>`.
#[derive(Debug)]
pub struct ErlangBinary<'a>(pub &'a [u8]);

impl std::fmt::Display for ErlangBinary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.0;
        if !bytes.is_empty() && bytes.iter().all(|b| (32..=126).contains(b)) {
            f.write_str("<<\"")?;
            for &b in bytes {
                if b == b'"' || b == b'\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{}", char::from(b))?;
            }
            return f.write_str("\">>");
        }
        f.write_str("<<")?;
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{b}")?;
        }
        f.write_str(">>")
    }
}

/// What a frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    /// Undecoded method payload; see [`methods::Method::decode`].
    Method(Bytes),
    /// Undecoded content header payload; see [`content::ContentHeader::decode`].
    Header(Bytes),
    Body(Bytes),
    Heartbeat,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub channel: u16,
    pub kind: FrameKind,
}

/// Outcome of looking at the first bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// Fewer than 8 bytes so far.
    Incomplete,
    /// `AMQP 0-9-1`; the 8 bytes may be consumed.
    Accepted,
    /// Anything else: answer with [`PROTOCOL_HEADER`] and close.
    Rejected,
}

/// Checks the protocol header at the start of `buf` without consuming it.
pub fn check_protocol_header(buf: &[u8]) -> HeaderCheck {
    match buf.get(..PROTOCOL_HEADER.len()) {
        None if PROTOCOL_HEADER.starts_with(buf) => HeaderCheck::Incomplete,
        None => HeaderCheck::Rejected,
        Some(head) if head == PROTOCOL_HEADER => HeaderCheck::Accepted,
        Some(_) => HeaderCheck::Rejected,
    }
}

/// Decodes one frame from the front of `buf`, consuming it. `frame_max` is the negotiated
/// maximum frame size including the 8 bytes of framing.
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, CodecError> {
    let Some(head) = buf.get(..7) else {
        return Ok(None);
    };
    let frame_type = head[0];
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    if size.saturating_add(FRAME_OVERHEAD) > frame_max as usize {
        return Err(CodecError::FrameTooLarge {
            frame_type,
            size,
            frame_max,
        });
    }
    let Some(&end) = buf.get(7 + size) else {
        return Ok(None);
    };
    if end != FRAME_END {
        return Err(CodecError::BadFrameEnd {
            frame_type,
            payload: Octets::of(&buf[7..7 + size]),
            end,
        });
    }
    let kind = match frame_type {
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT => frame_type,
        _ => {
            return Err(CodecError::UnknownFrameType {
                frame_type,
                payload: Octets::of(&buf[7..7 + size]),
            });
        }
    };
    buf.advance(7);
    let payload = buf.split_to(size).freeze();
    buf.advance(1);
    let kind = match kind {
        FRAME_METHOD => FrameKind::Method(payload),
        FRAME_HEADER => FrameKind::Header(payload),
        FRAME_BODY => FrameKind::Body(payload),
        _ if channel != 0 => {
            return Err(CodecError::HeartbeatOnChannel {
                channel,
                payload: Octets::of(&payload),
            });
        }
        _ => FrameKind::Heartbeat,
    };
    Ok(Some(Frame { channel, kind }))
}

/// Appends one frame with the given payload.
pub fn encode_frame(out: &mut BytesMut, frame_type: u8, channel: u16, payload: &[u8]) {
    out.reserve(payload.len() + FRAME_OVERHEAD);
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_u32(payload.len() as u32);
    out.extend_from_slice(payload);
    out.put_u8(FRAME_END);
}

/// Appends a heartbeat frame.
pub fn encode_heartbeat(out: &mut BytesMut) {
    encode_frame(out, FRAME_HEARTBEAT, 0, &[]);
}

/// Appends a frame whose payload `write_payload` appends in place: the size field is
/// patched afterwards, so the payload is neither buffered nor copied.
fn encode_frame_with(
    out: &mut BytesMut,
    frame_type: u8,
    channel: u16,
    write_payload: impl FnOnce(&mut BytesMut),
) {
    let start = out.len();
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_u32(0);
    write_payload(out);
    let size = (out.len() - start - 7) as u32;
    out[start + 3..start + 7].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Appends a method frame.
pub fn encode_method(out: &mut BytesMut, channel: u16, method: &methods::Method) {
    encode_frame_with(out, FRAME_METHOD, channel, |payload| method.encode(payload));
}

/// Appends a complete message: method frame, content header and body frames no larger than
/// `frame_max` (a zero-length body has no body frame).
pub fn encode_message(
    out: &mut BytesMut,
    channel: u16,
    method: &methods::Method,
    raw_properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    encode_content(
        out,
        channel,
        |payload| method.encode(payload),
        raw_properties,
        body,
        frame_max,
    );
}

/// [`encode_message`] for a `basic.deliver` given by borrowed fields.
pub fn encode_delivery(
    out: &mut BytesMut,
    channel: u16,
    deliver: &methods::DeliverFields<'_>,
    raw_properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    encode_content(
        out,
        channel,
        |payload| deliver.encode(payload),
        raw_properties,
        body,
        frame_max,
    );
}

/// A body at least this long is sent as [`content_pieces`] (slices of the stored body, one
/// piece per frame) rather than copied into the frames.
pub const PIECED_BODY_BYTES: usize = 64 * 1024;

/// The frames of a complete message as [`encode_message`] writes them, cut into pieces that
/// borrow `body` (each body frame's payload is a slice of it) instead of copying it: the
/// method and header frames with the first body frame's header, then each payload followed by
/// its frame end and the next frame's header.
pub fn message_pieces(
    channel: u16,
    method: &methods::Method,
    raw_properties: &[u8],
    body: &Bytes,
    frame_max: u32,
) -> Vec<Bytes> {
    content_pieces(
        channel,
        |payload| method.encode(payload),
        raw_properties,
        body,
        frame_max,
    )
}

/// [`message_pieces`] for a `basic.deliver` given by borrowed fields.
pub fn delivery_pieces(
    channel: u16,
    deliver: &methods::DeliverFields<'_>,
    raw_properties: &[u8],
    body: &Bytes,
    frame_max: u32,
) -> Vec<Bytes> {
    content_pieces(
        channel,
        |payload| deliver.encode(payload),
        raw_properties,
        body,
        frame_max,
    )
}

fn content_pieces(
    channel: u16,
    write_method: impl FnOnce(&mut BytesMut),
    raw_properties: &[u8],
    body: &Bytes,
    frame_max: u32,
) -> Vec<Bytes> {
    let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    let frames = body.len().div_ceil(chunk);
    let mut pieces = Vec::with_capacity(2 * frames + 1);
    let mut head = BytesMut::with_capacity(64 + raw_properties.len() + FRAME_OVERHEAD);
    encode_frame_with(&mut head, FRAME_METHOD, channel, write_method);
    encode_frame_with(&mut head, FRAME_HEADER, channel, |header| {
        content::ContentHeader::encode_raw(header, body.len() as u64, raw_properties);
    });
    let mut start = 0;
    while start < body.len() {
        let end = (start + chunk).min(body.len());
        if start > 0 {
            head.put_u8(FRAME_END);
        }
        head.put_u8(FRAME_BODY);
        head.put_u16(channel);
        head.put_u32((end - start) as u32);
        pieces.push(head.split().freeze());
        pieces.push(body.slice(start..end));
        start = end;
    }
    if !body.is_empty() {
        head.put_u8(FRAME_END);
    }
    if !head.is_empty() {
        pieces.push(head.freeze());
    }
    pieces
}

fn encode_content(
    out: &mut BytesMut,
    channel: u16,
    write_method: impl FnOnce(&mut BytesMut),
    raw_properties: &[u8],
    body: &[u8],
    frame_max: u32,
) {
    let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    let frames = 2 + body.len().div_ceil(chunk);
    out.reserve(64 + raw_properties.len() + body.len() + frames * FRAME_OVERHEAD);
    encode_frame_with(out, FRAME_METHOD, channel, write_method);
    encode_frame_with(out, FRAME_HEADER, channel, |header| {
        content::ContentHeader::encode_raw(header, body.len() as u64, raw_properties);
    });
    for piece in body.chunks(chunk) {
        encode_frame(out, FRAME_BODY, channel, piece);
    }
}

#[cfg(test)]
mod tests;
