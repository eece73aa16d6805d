//! AMQP 0-9-1 primitive types (all big-endian): octet, short (u16), long (u32), longlong (u64),
//! shortstr (u8 length + bytes), longstr (u32 length + bytes) and packed bits. The reader checks
//! every length against the bytes remaining before it slices, so a lying length is an error, not
//! an allocation.

use bytes::{BufMut, Bytes, BytesMut};

use super::CodecError;

/// A checked cursor over one frame payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        if len > self.buf.len() {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn shortstr(&mut self) -> Result<String, CodecError> {
        let len = usize::from(self.u8()?);
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| CodecError::BadUtf8)
    }

    pub fn longstr(&mut self) -> Result<Bytes, CodecError> {
        let len = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
}

pub fn put_shortstr(out: &mut BytesMut, value: &str) {
    // Short strings are at most 255 bytes; callers pass names that were validated, and an
    // over-long server-side text is cut rather than corrupting the frame.
    let bytes = value.as_bytes();
    let len = bytes.len().min(255);
    out.put_u8(len as u8);
    out.extend_from_slice(&bytes[..len]);
}

pub fn put_longstr(out: &mut BytesMut, value: &[u8]) {
    out.put_u32(value.len() as u32);
    out.extend_from_slice(value);
}

/// Packs booleans into one octet, first flag in the lowest bit (AMQP bit packing).
pub fn put_bits(out: &mut BytesMut, flags: &[bool]) {
    let mut octet = 0u8;
    for (index, flag) in flags.iter().enumerate() {
        if *flag {
            octet |= 1 << index;
        }
    }
    out.put_u8(octet);
}

/// Unpacks the `index`th bit of an octet.
pub fn bit(octet: u8, index: u8) -> bool {
    octet & (1 << index) != 0
}
