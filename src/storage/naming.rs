//! Topic directory names and segment file names.
//!
//! A topic directory name is the topic name with every byte outside `[A-Za-z0-9._-]` written as
//! `%XX` (upper-case hex); a leading `.` is always encoded, so no topic directory starts with a dot
//! and `.`/`..` can never be produced (dot-names are reserved for the engine's own bookkeeping).
//! Encoded names longer than [`MAX_PLAIN_DIR_LEN`] bytes are cut at a `%XX` boundary and get a
//! `~<16 hex digits>` suffix (FNV-1a 64 of the full name), keeping every directory name far below
//! the usual 255-byte file-name limit. The real name is always stored in the topic directory's
//! [`TOPIC_NAME_FILE`], which wins over decoding the directory name.

use std::path::{Path, PathBuf};

/// Longest encoded name used verbatim as a directory name.
pub(crate) const MAX_PLAIN_DIR_LEN: usize = 200;
/// Holds the topic's real name inside its directory.
pub(crate) const TOPIC_NAME_FILE: &str = "topic-name";

/// True when the name may be a topic: 1..=255 bytes without '/' or NUL.
pub(crate) fn is_valid_topic_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.bytes().any(|b| b == b'/' || b == 0)
}

fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')
}

/// The directory name of a topic (see the module doc).
pub(crate) fn encode_topic_dir(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    // Byte index in `out` after each whole encoded input byte, to cut only at boundaries.
    let mut boundaries = Vec::with_capacity(name.len());
    for (i, byte) in name.bytes().enumerate() {
        if is_plain(byte) && !(i == 0 && byte == b'.') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
        boundaries.push(out.len());
    }
    if out.len() <= MAX_PLAIN_DIR_LEN {
        return out;
    }
    let cut = boundaries
        .iter()
        .copied()
        .take_while(|end| *end <= MAX_PLAIN_DIR_LEN)
        .last()
        .unwrap_or(0);
    out.truncate(cut);
    out.push_str(&format!("~{:016x}", fnv1a64(name.as_bytes())));
    out
}

/// Decodes a directory name made by [`encode_topic_dir`] when it was not shortened.
/// Returns `None` for shortened names, dot-names and anything that is not valid encoding.
pub(crate) fn decode_topic_dir(dir_name: &str) -> Option<String> {
    if dir_name.starts_with('.') || dir_name.contains('~') {
        return None;
    }
    let raw = dir_name.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if is_plain(raw[i]) {
            bytes.push(raw[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

/// FNV-1a, 64-bit: a stable, dependency-free hash for shortened directory names.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `<dir>/<20-digit base offset>.<extension>`.
pub(crate) fn segment_file(dir: &Path, base_offset: i64, extension: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{extension}"))
}

/// The base offset of a `<20 digits>.log` file name.
pub(crate) fn parse_segment_name(file_name: &str) -> Option<i64> {
    let stem = file_name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(encode_topic_dir("orders.v1_eu-west"), "orders.v1_eu-west");
        assert_eq!(
            decode_topic_dir("orders.v1_eu-west").as_deref(),
            Some("orders.v1_eu-west")
        );
    }

    #[test]
    fn special_bytes_and_leading_dots_are_encoded() {
        assert_eq!(encode_topic_dir("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(encode_topic_dir("."), "%2E");
        assert_eq!(encode_topic_dir(".."), "%2E.");
        assert_eq!(encode_topic_dir("%"), "%25");
        for name in ["a b", ".", "..", "%41", "日本語", "x:y*z?", ".hidden"] {
            let dir = encode_topic_dir(name);
            assert!(!dir.starts_with('.'), "{dir}");
            assert_eq!(decode_topic_dir(&dir).as_deref(), Some(name));
        }
    }

    #[test]
    fn long_names_are_shortened_with_a_distinct_hash() {
        let long_a = "é".repeat(127);
        let long_b = format!("{}x", "é".repeat(126));
        let dir_a = encode_topic_dir(&long_a);
        let dir_b = encode_topic_dir(&long_b);
        assert!(dir_a.len() <= MAX_PLAIN_DIR_LEN + 17, "{}", dir_a.len());
        assert_ne!(dir_a, dir_b);
        assert_eq!(decode_topic_dir(&dir_a), None);
        // Cut only at a whole `%XX`.
        let prefix = dir_a.split('~').next().unwrap_or_default();
        assert_eq!(prefix.len() % 3, 0);
        assert!(is_valid_topic_name(&long_a));
    }

    #[test]
    fn invalid_names_are_refused() {
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name("a/b"));
        assert!(!is_valid_topic_name("a\0b"));
        assert!(!is_valid_topic_name(&"x".repeat(256)));
    }

    #[test]
    fn segment_names_round_trip() {
        let path = segment_file(Path::new("/d"), 42, "log");
        assert_eq!(path, Path::new("/d/00000000000000000042.log"));
        assert_eq!(parse_segment_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_segment_name("42.log"), None);
        assert_eq!(parse_segment_name("00000000000000000042.index"), None);
    }
}
