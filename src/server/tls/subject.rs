//! The subject of a verified client certificate, as the frontends name the client: its common
//! name (the broker user) and its distinguished name in RFC 4514 form (what Kafka prints).
//!
//! A small DER reader: the certificate has already been parsed and verified by rustls, so this
//! only walks `Certificate -> tbsCertificate -> subject`. Every length is checked against the
//! bytes that are there before it is used; anything unexpected gives `None` (the connection
//! then has no certificate identity, which grants nothing).

use tributary_api::CertificateIdentity;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT Version` at the start of a v2/v3 `tbsCertificate`.
const VERSION: u8 = 0xA0;

/// `id-at-commonName` (2.5.4.3).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Short names RFC 4514 (and Java's `X500Principal`) print; other attributes are printed as
/// a dotted OID with a `#`-hex value.
const SHORT_NAMES: &[(&[u8], &str)] = &[
    (COMMON_NAME, "CN"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x0A], "O"),
    (&[0x55, 0x04, 0x0B], "OU"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x09], "STREET"),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x19],
        "DC",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x01],
        "UID",
    ),
];

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7F);
        // Four length bytes cover any certificate; more (or the indefinite form) is not DER.
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes
            .iter()
            .fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
        (len, rest)
    };
    let (contents, after) = rest.split_at_checked(len)?;
    Some((tag, contents, after))
}

fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, contents, after) = element(input)?;
    (tag == want).then_some((contents, after))
}

/// The identity in a DER certificate, or `None` when its subject cannot be read.
pub fn identity(certificate: &[u8]) -> Option<CertificateIdentity> {
    let (certificate, _) = expect(certificate, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (mut name, _) = expect(tbs, SEQUENCE)?;
    let mut rdns = Vec::new();
    let mut common_name = None;
    while !name.is_empty() {
        let (mut set, rest) = expect(name, SET)?;
        name = rest;
        let mut attributes = Vec::new();
        while !set.is_empty() {
            let (pair, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(pair, OID)?;
            let (value_tag, value_bytes, _) = element(value)?;
            let text = string_value(value_tag, value_bytes);
            if oid == COMMON_NAME
                && let Some(text) = &text
            {
                common_name = Some(text.clone());
            }
            attributes.push(attribute(oid, text.as_deref(), value));
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Some(CertificateIdentity {
        common_name,
        subject: rdns.join(","),
    })
}

/// The text of a directory string, or `None` for a type that has none.
fn string_value(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, and TeletexString in practice (ASCII).
        0x0C | 0x13 | 0x16 | 0x14 => String::from_utf8(bytes.to_vec()).ok(),
        // BMPString: UTF-16BE.
        0x1E => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let units = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    }
}

/// `TYPE=value` as RFC 4514 prints it.
fn attribute(oid: &[u8], text: Option<&str>, encoded: &[u8]) -> String {
    let name = SHORT_NAMES
        .iter()
        .find(|(known, _)| *known == oid)
        .map(|(_, name)| (*name).to_owned());
    match (name, text) {
        (Some(name), Some(text)) => format!("{name}={}", escape(text)),
        (name, _) => {
            let name = name.unwrap_or_else(|| dotted(oid));
            let hex: String = encoded.iter().map(|byte| format!("{byte:02x}")).collect();
            format!("{name}=#{hex}")
        }
    }
}

/// An OID's dotted form (`1.2.840.113549.1.9.1`).
fn dotted(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut value: u64 = 0;
    for (index, byte) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(byte & 0x7F);
        if byte & 0x80 == 0 {
            if parts.is_empty() {
                let first = (value / 40).min(2);
                parts.push(first.to_string());
                parts.push((value - first * 40).to_string());
            } else {
                parts.push(value.to_string());
            }
            value = 0;
        } else if index == oid.len() - 1 {
            parts.push("?".to_owned());
        }
    }
    parts.join(".")
}

/// RFC 4514 escaping: the specials anywhere, a leading `#` or space, a trailing space.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, ch) in value.chars().enumerate() {
        let special = matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && matches!(ch, '#' | ' '))
            || (index == last && ch == ' ');
        if special {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(subject: rcgen::DistinguishedName) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = subject;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_common_name_and_the_rfc_4514_subject_are_read() {
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CountryName, "DE");
        name.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        name.push(rcgen::DnType::CommonName, "alice");
        let identity = identity(&certificate(name)).expect("a subject");
        assert_eq!(identity.common_name.as_deref(), Some("alice"));
        assert_eq!(identity.subject, "CN=alice,O=Example\\, Inc.,C=DE");
    }

    #[test]
    fn a_subject_without_a_common_name_has_none() {
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::OrganizationName, "Example");
        let identity = identity(&certificate(name)).expect("a subject");
        assert_eq!(identity.common_name, None);
        assert_eq!(identity.subject, "O=Example");
    }

    #[test]
    fn truncated_or_garbage_input_gives_none() {
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, "alice");
        let der = certificate(name);
        for cut in 0..der.len().min(200) {
            let _ = identity(&der[..cut]);
        }
        assert_eq!(identity(&[]), None);
        assert_eq!(identity(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]), None);
        assert_eq!(identity(b"not a certificate"), None);
    }

    #[test]
    fn specials_are_escaped_and_unknown_oids_are_dotted() {
        assert_eq!(escape("#a b "), "\\#a b\\ ");
        assert_eq!(escape("a+b;c"), "a\\+b\\;c");
        assert_eq!(
            dotted(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01]),
            "1.2.840.113549.1.9.1"
        );
    }
}
