//! Encoded frames waiting to be written: the small fields of frames are gathered into
//! buffers, while byte strings of [`SLICE_BYTES`] or more (a message body, a batch) stay
//! slices of the buffers the caller already holds. A forwarded 15 MiB message is therefore
//! sent without being copied into a frame buffer.
//!
//! Invariants: the pieces, in order, are exactly the encoded byte stream; a length prefix
//! reserved by [`Outgoing::mark`] always lies in a gathered piece or in the tail, so it can be
//! patched once the frame's length is known; no I/O here (the callers write the pieces).

use bytes::{BufMut, Bytes, BytesMut};

/// Byte strings at least this long are sent as slices instead of being copied.
pub const SLICE_BYTES: usize = 64 * 1024;

/// A gathering buffer grown past this is released after its frames were written, so one
/// large frame does not pin its size for the connection's lifetime.
const RETAINED_BYTES: usize = 1 << 20;

#[derive(Debug)]
enum Piece {
    Gathered(BytesMut),
    Slice(Bytes),
}

/// One or more encoded frames; small fields go into the tail.
#[derive(Debug, Default)]
pub struct Outgoing {
    done: Vec<Piece>,
    tail: BytesMut,
}

/// Where a length prefix was reserved: piece index and offset inside it.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    piece: usize,
    at: usize,
}

impl Outgoing {
    /// Bytes encoded so far.
    pub fn len(&self) -> usize {
        self.done
            .iter()
            .map(|piece| piece.bytes().len())
            .sum::<usize>()
            + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty() && self.tail.is_empty()
    }

    /// Appends `bytes`: as a slice of the caller's buffer when large, copied when small.
    pub fn put_shared(&mut self, bytes: &Bytes) {
        if bytes.len() < SLICE_BYTES {
            self.tail.put_slice(bytes);
            return;
        }
        if !self.tail.is_empty() {
            self.done.push(Piece::Gathered(self.tail.split()));
        }
        self.done.push(Piece::Slice(bytes.clone()));
    }

    /// Reserves a big-endian `u32` at the current end, to be set by [`Outgoing::patch_u32`].
    pub fn mark(&mut self) -> Mark {
        let mark = Mark {
            piece: self.done.len(),
            at: self.tail.len(),
        };
        self.tail.put_u32(0);
        mark
    }

    /// Sets the `u32` reserved at `mark`.
    pub fn patch_u32(&mut self, mark: Mark, value: u32) {
        let target = match self.done.get_mut(mark.piece) {
            None => &mut self.tail,
            Some(Piece::Gathered(gathered)) => gathered,
            // `mark` always writes into the tail, and a tail becomes a gathered piece.
            Some(Piece::Slice(_)) => unreachable!("a mark lies in a gathered piece"),
        };
        target[mark.at..mark.at + 4].copy_from_slice(&value.to_be_bytes());
    }

    /// Drops everything encoded since `mark` (its reserved prefix included).
    pub fn truncate_to(&mut self, mark: Mark) {
        if mark.piece < self.done.len() {
            let Piece::Gathered(mut gathered) = self.done.swap_remove(mark.piece) else {
                unreachable!("a mark lies in a gathered piece");
            };
            self.done.truncate(mark.piece);
            gathered.truncate(mark.at);
            self.tail = gathered;
        } else {
            self.tail.truncate(mark.at);
        }
    }

    /// The pieces in writing order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.done
            .iter()
            .map(Piece::bytes)
            .chain(std::iter::once(&self.tail[..]))
            .filter(|piece| !piece.is_empty())
    }

    /// Empties it for the next frames; a grown gathering buffer is released.
    pub fn clear(&mut self) {
        self.done.clear();
        self.tail.clear();
        if self.tail.capacity() > RETAINED_BYTES {
            self.tail = BytesMut::new();
        }
    }

    /// Everything in one buffer (tests and one-off frames).
    pub fn to_bytes(&self) -> BytesMut {
        let mut joined = BytesMut::with_capacity(self.len());
        for piece in self.pieces() {
            joined.put_slice(piece);
        }
        joined
    }
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Gathered(gathered) => gathered,
            Piece::Slice(slice) => slice,
        }
    }
}

/// Small fields, big-endian, into the tail (the codec's fixed-width writes).
macro_rules! put_fixed {
    ($($name:ident: $ty:ty),*) => {
        impl Outgoing {
            $(pub fn $name(&mut self, value: $ty) {
                self.tail.$name(value);
            })*
        }
    };
}

put_fixed!(put_u8: u8, put_u16: u16, put_u32: u32, put_u64: u64, put_i32: i32, put_i64: i64);

impl Outgoing {
    /// Copies `bytes` into the tail (strings and other small fields).
    pub fn put_slice(&mut self, bytes: &[u8]) {
        self.tail.put_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_strings_are_sent_from_the_callers_buffer_and_small_ones_gathered() {
        let large = Bytes::from(vec![7u8; SLICE_BYTES]);
        let small = Bytes::from_static(b"small");
        let mut out = Outgoing::default();
        let mark = out.mark();
        out.put_shared(&small);
        out.put_shared(&large);
        out.put_u8(1);
        out.patch_u32(mark, 42);
        let pieces: Vec<&[u8]> = out.pieces().collect();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0], b"\0\0\0\x2asmall");
        assert_eq!(
            pieces[1].as_ptr(),
            large.as_ptr(),
            "the large string was copied"
        );
        assert_eq!(pieces[2], [1]);
        assert_eq!(out.len(), 4 + 5 + SLICE_BYTES + 1);
        assert_eq!(out.to_bytes().len(), out.len());
    }

    #[test]
    fn truncating_to_a_mark_drops_the_frame_across_pieces() {
        let mut out = Outgoing::default();
        out.put_u8(9);
        let mark = out.mark();
        out.put_shared(&Bytes::from(vec![1u8; SLICE_BYTES]));
        out.put_u8(2);
        out.truncate_to(mark);
        assert_eq!(&out.to_bytes()[..], [9]);
        let mark = out.mark();
        out.put_u8(3);
        out.truncate_to(mark);
        assert_eq!(&out.to_bytes()[..], [9]);
    }

    #[test]
    fn clearing_releases_a_grown_buffer() {
        let mut out = Outgoing::default();
        out.put_slice(&vec![0u8; 2 * RETAINED_BYTES]);
        out.clear();
        assert!(out.is_empty());
        assert!(out.tail.capacity() <= RETAINED_BYTES);
    }
}
