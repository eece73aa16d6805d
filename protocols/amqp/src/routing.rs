//! Exchange types and how each matches a routing key (or headers) against a binding.
//!
//! * direct: the routing key equals the binding key;
//! * fanout: every binding matches;
//! * topic: dot-separated words, `*` matches exactly one word, `#` zero or more;
//! * headers: `x-match` = `all` (default) | `any` | `all-with-x` | `any-with-x`; binding
//!   arguments starting with `x-` are ignored unless a `-with-x` form is used; a `V` (void)
//!   binding value matches on presence alone.

use crate::codec::table::{FieldTable, FieldValue};

/// The exchange types this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "direct" => Some(Self::Direct),
            "fanout" => Some(Self::Fanout),
            "topic" => Some(Self::Topic),
            "headers" => Some(Self::Headers),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
        }
    }

    /// Whether a binding with `binding_key`/`binding_args` matches a message.
    pub fn matches(
        self,
        binding_key: &str,
        binding_args: &FieldTable,
        routing_key: &str,
        headers: Option<&FieldTable>,
    ) -> bool {
        match self {
            Self::Direct => binding_key == routing_key,
            Self::Fanout => true,
            Self::Topic => topic_matches(binding_key, routing_key),
            Self::Headers => headers_match(binding_args, headers),
        }
    }
}

/// Topic matching: `*` is one word, `#` is zero or more words.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let words: Vec<&str> = routing_key.split('.').collect();
    // Iterative matching with backtracking to the last `#`, so hostile patterns stay linear-ish.
    let (mut p, mut w) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while w < words.len() {
        match pattern.get(p) {
            Some(&"#") => {
                star = Some((p, w));
                p += 1;
            }
            Some(&word) if word == "*" || word == words[w] => {
                p += 1;
                w += 1;
            }
            _ => match star {
                Some((star_p, star_w)) => {
                    p = star_p + 1;
                    w = star_w + 1;
                    star = Some((star_p, star_w + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|word| *word == "#")
}

fn headers_match(binding_args: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = binding_args
        .get("x-match")
        .and_then(FieldValue::as_str)
        .unwrap_or("all");
    let (any, with_x) = match mode {
        "any" => (true, false),
        "all-with-x" => (false, true),
        "any-with-x" => (true, true),
        _ => (false, false),
    };
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty);
    let mut considered = binding_args
        .0
        .iter()
        .filter(|(key, _)| key != "x-match" && (with_x || !key.starts_with("x-")));
    let entry_matches = |(key, expected): &(String, FieldValue)| match headers.get(key) {
        None => false,
        Some(_) if *expected == FieldValue::Void => true,
        Some(actual) => actual == expected || numeric_equal(actual, expected),
    };
    if any {
        considered.any(&entry_matches)
    } else {
        considered.all(entry_matches)
    }
}

fn numeric_equal(a: &FieldValue, b: &FieldValue) -> bool {
    matches!((a.as_i64(), b.as_i64()), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn topic_wildcards() {
        assert!(topic_matches("a.*.c", "a.b.c"));
        assert!(!topic_matches("a.*.c", "a.b.b.c"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#", "a.b.c"));
        assert!(topic_matches("#", ""));
        assert!(topic_matches("#.c", "a.b.c"));
        assert!(topic_matches("a.#.c", "a.c"));
        assert!(topic_matches("a.#.c", "a.x.y.c"));
        assert!(!topic_matches("a.#.c", "a.x.y.d"));
        assert!(!topic_matches("*", "a.b"));
        assert!(!topic_matches("*.b", "a"));
        assert!(topic_matches("#.#", "a.b"));
        assert!(topic_matches("stock.usd.nyse", "stock.usd.nyse"));
        assert!(!topic_matches("stock.usd", "stock.eur"));
    }

    fn table(entries: &[(&str, &str)]) -> FieldTable {
        FieldTable(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        FieldValue::LongString(Bytes::copy_from_slice(v.as_bytes())),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn headers_all_and_any() {
        let all = table(&[("x-match", "all"), ("a", "1"), ("b", "2")]);
        let any = table(&[("x-match", "any"), ("a", "1"), ("b", "2")]);
        let both = table(&[("a", "1"), ("b", "2")]);
        let one = table(&[("a", "1")]);
        let kind = ExchangeKind::Headers;
        assert!(kind.matches("", &all, "", Some(&both)));
        assert!(!kind.matches("", &all, "", Some(&one)));
        assert!(kind.matches("", &any, "", Some(&one)));
        assert!(!kind.matches("", &any, "", None));
        let with_x = table(&[("x-match", "all-with-x"), ("x-k", "v")]);
        assert!(!kind.matches("", &with_x, "", Some(&one)));
        assert!(kind.matches("", &with_x, "", Some(&table(&[("x-k", "v")]))));
    }
}
