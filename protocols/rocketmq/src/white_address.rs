//! Address whitelists of RocketMQ's plain ACL: `globalWhiteRemoteAddresses` (a request from a
//! matching peer passes the ACL unchecked) and an account's `whiteRemoteAddress` (a request
//! naming that account's access key from a matching peer is not asked for a signature; the
//! account's permissions still apply). See [`crate::acl`].
//!
//! A list is patterns separated by commas (a comma inside `{}` belongs to its pattern). The
//! patterns RocketMQ's `RemoteAddressStrategyFactory` accepts:
//!
//! | pattern | matches |
//! |---|---|
//! | `*`, `*.*.*.*`, `*:*:*:*:*:*:*:*` | every address |
//! | `192.168.1.7`, `fe80::1` | that address (IPv6 compared as addresses, so any spelling) |
//! | `192.168.1.{1,2,3}`, `fe80:0:0:0:0:0:0:{1,2}` | those addresses (the braces in the last part) |
//! | `192.168.1.*`, `192.168.*.*`, `10.*.*.*` | the addresses with those leading parts |
//! | `192.168.1.1-100`, `192.168.1-3.*` | a range in the first part that is not fixed |
//! | `fe80:0:0:0:0:0:0:*`, `fe80:0:0:0:0:0:0-ff:*` | the same for IPv6, every group written out |
//!
//! Invariants: a pattern is parsed once, when it is set (configuration at start-up, a user
//! record when stored) and refused with a message naming it if it is not one of the above; a
//! wildcard or range must be followed only by `*` (RocketMQ ignores what follows, so
//! `192.168.1-3.7` would match `192.168.2.9` there: refused here rather than read that way); the
//! first part is never a wildcard (as in RocketMQ: write `*` for everything); an IPv4-mapped
//! IPv6 peer (`::ffff:10.0.0.1`) is matched as its IPv4 address. A blank list matches nothing.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A list of whitelist patterns, as parsed from the text it was given in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WhiteList {
    patterns: Vec<Pattern>,
}

/// A pattern the parser refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad RocketMQ white address `{pattern}`: {reason}")]
pub struct BadPattern {
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    rule: Rule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Any,
    /// One of these addresses.
    Exact(Vec<IpAddr>),
    /// The first `head.len()` parts fixed, the next one in `low..=high`, the rest anything.
    V4Range {
        head: Vec<u8>,
        low: u8,
        high: u8,
    },
    V6Range {
        head: Vec<u16>,
        low: u16,
        high: u16,
    },
}

impl WhiteList {
    /// Parses a comma-separated list; blank text is an empty list.
    pub fn parse(text: &str) -> Result<Self, BadPattern> {
        let mut patterns = Vec::new();
        for item in split_top_level(text) {
            let item = item.trim();
            if !item.is_empty() {
                patterns.push(Pattern::parse(item)?);
            }
        }
        Ok(Self { patterns })
    }

    /// Whether no pattern is set.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some pattern admits every address (`*`), which turns the ACL off for everyone.
    pub fn admits_everyone(&self) -> bool {
        self.patterns
            .iter()
            .any(|pattern| pattern.rule == Rule::Any)
    }

    /// The first pattern that matches `peer`, as it was written.
    pub fn matching(&self, peer: IpAddr) -> Option<&str> {
        let peer = peer.to_canonical();
        self.patterns
            .iter()
            .find(|pattern| pattern.rule.matches(peer))
            .map(|pattern| pattern.text.as_str())
    }
}

impl fmt::Display for WhiteList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<&str> = self.patterns.iter().map(|p| p.text.as_str()).collect();
        f.write_str(&texts.join(","))
    }
}

/// Splits at commas outside braces.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, BadPattern> {
        let bad = |reason: &str| BadPattern {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        let rule = if matches!(text, "*" | "*.*.*.*" | "*:*:*:*:*:*:*:*") {
            Rule::Any
        } else if let Some(open) = text.find('{') {
            let inner = text[open..]
                .strip_prefix('{')
                .and_then(|rest| rest.strip_suffix('}'))
                .filter(|inner| !inner.contains(['{', '}']))
                .ok_or_else(|| bad("braces must close the pattern: `a.b.c.{x,y}`"))?;
            let head = &text[..open];
            if !(head.ends_with('.') || head.ends_with(':')) {
                return Err(bad("braces replace the whole last part"));
            }
            let addresses = inner
                .split(',')
                .map(|last| parse_ip(&format!("{head}{}", last.trim())))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("each address in the braces must be a whole IP address"))?;
            let v4_head = head.ends_with('.') && head.matches('.').count() == 3;
            let v6_head = head.ends_with(':') && !head.contains("::");
            if addresses.is_empty() || !(v4_head || v6_head) {
                return Err(bad("braces replace the last part of a written-out address"));
            }
            Rule::Exact(addresses)
        } else if text.contains(['*', '-']) {
            range(text).map_err(|reason| bad(&reason))?
        } else {
            Rule::Exact(vec![parse_ip(text).ok_or_else(|| {
                bad("not an IP address, `*`, a wildcard, a range or a `{}` list")
            })?])
        };
        Ok(Self {
            text: text.to_owned(),
            rule,
        })
    }
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// `192.168.*.*`, `192.168.1.1-100`, `fe80:0:0:0:0:0:0:*`.
fn range(text: &str) -> Result<Rule, String> {
    let v6 = text.contains(':');
    let parts: Vec<&str> = text.split(if v6 { ':' } else { '.' }).collect();
    let (count, radix, max) = if v6 { (8, 16, 0xffff) } else { (4, 10, 255) };
    if parts.len() != count {
        return Err(format!(
            "a wildcard or range pattern writes out all {count} parts{}",
            if v6 { " (no `::`)" } else { "" }
        ));
    }
    let number = |part: &str| {
        u32::from_str_radix(part, radix)
            .ok()
            .filter(|n| *n <= max && !part.is_empty() && !part.starts_with('+'))
    };
    let Some(at) = parts.iter().position(|part| number(part).is_none()) else {
        return Err("no wildcard or range part".to_owned());
    };
    if at == 0 {
        return Err("the first part must be fixed (write `*` for every address)".to_owned());
    }
    if parts[at + 1..].iter().any(|part| *part != "*") {
        return Err("only `*` may follow a wildcard or range part".to_owned());
    }
    let (low, high) = match parts[at] {
        "*" => (0, max),
        part => {
            let (low, high) = part
                .split_once('-')
                .and_then(|(low, high)| Some((number(low)?, number(high)?)))
                .ok_or_else(|| format!("`{part}` is neither `*` nor a range `low-high`"))?;
            if low > high {
                return Err(format!("the range `{part}` is empty"));
            }
            (low, high)
        }
    };
    let head: Vec<u32> = parts[..at].iter().filter_map(|part| number(part)).collect();
    // Values were bounded by `max` above, so the narrowing casts are exact.
    Ok(if v6 {
        Rule::V6Range {
            head: head.iter().map(|n| *n as u16).collect(),
            low: low as u16,
            high: high as u16,
        }
    } else {
        Rule::V4Range {
            head: head.iter().map(|n| *n as u8).collect(),
            low: low as u8,
            high: high as u8,
        }
    })
}

impl Rule {
    fn matches(&self, peer: IpAddr) -> bool {
        match (self, peer) {
            (Rule::Any, _) => true,
            (Rule::Exact(addresses), peer) => addresses.contains(&peer),
            (Rule::V4Range { head, low, high }, IpAddr::V4(peer)) => {
                in_range(&Ipv4Addr::octets(&peer), head, *low, *high)
            }
            (Rule::V6Range { head, low, high }, IpAddr::V6(peer)) => {
                in_range(&Ipv6Addr::segments(&peer), head, *low, *high)
            }
            _ => false,
        }
    }
}

fn in_range<T: PartialEq + PartialOrd + Copy>(parts: &[T], head: &[T], low: T, high: T) -> bool {
    parts.starts_with(head)
        && parts
            .get(head.len())
            .is_some_and(|part| (low..=high).contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn admits(list: &str, peer: &str) -> bool {
        WhiteList::parse(list).unwrap().matching(ip(peer)).is_some()
    }

    #[test]
    fn the_patterns_rocketmq_documents_match_as_there() {
        for every in ["*", "*.*.*.*", "*:*:*:*:*:*:*:*"] {
            assert!(admits(every, "10.1.2.3") && admits(every, "::1"), "{every}");
            assert!(WhiteList::parse(every).unwrap().admits_everyone());
        }
        assert!(admits("192.168.1.7", "192.168.1.7"));
        assert!(!admits("192.168.1.7", "192.168.1.8"));
        assert!(admits("fe80::1", "fe80:0:0:0:0:0:0:1"));
        assert!(admits("FE80:0:0:0:0:0:0:1", "fe80::1"));
        assert!(admits("127.0.0.*", "127.0.0.1"));
        assert!(!admits("10.*.*.*", "127.0.0.1"));
        assert!(admits("10.*.*.*", "10.200.3.4"));
        assert!(admits("192.168.*.*", "192.168.77.1"));
        assert!(!admits("192.168.*.*", "192.169.0.1"));
        assert!(admits("192.168.1.1-100", "192.168.1.100"));
        assert!(!admits("192.168.1.1-100", "192.168.1.101"));
        assert!(!admits("192.168.1.1-100", "192.168.1.0"));
        assert!(admits("192.168.1-3.*", "192.168.3.250"));
        assert!(!admits("192.168.1-3.*", "192.168.4.1"));
        assert!(admits("192.168.1.{1,2,3}", "192.168.1.2"));
        assert!(!admits("192.168.1.{1,2,3}", "192.168.1.4"));
        assert!(admits("fe80:0:0:0:0:0:0:*", "fe80::abcd"));
        assert!(admits("fe80:0:0:0:0:0:0-ff:*", "fe80::ff:1"));
        assert!(!admits("fe80:0:0:0:0:0:0-ff:*", "fe80::100:1"));
        assert!(admits("fe80:0:0:0:0:0:0:{1,2}", "fe80::2"));
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        assert!(admits("127.0.0.*", "::ffff:127.0.0.1"));
        // IPv4 patterns never match IPv6 peers and the other way round.
        assert!(!admits("127.0.0.*", "::1"));
        // Lists, with commas inside braces kept in their pattern.
        assert!(admits("10.*.*.*, 192.168.1.{1,2}", "192.168.1.2"));
        assert!(admits("1.2.3.4,1.2.3.5", "1.2.3.5"));
        assert!(!admits("", "1.2.3.5"));
        assert!(WhiteList::parse(" ").unwrap().is_empty());
        assert_eq!(
            WhiteList::parse("10.*.*.*,192.168.1.{1,2}")
                .unwrap()
                .to_string(),
            "10.*.*.*,192.168.1.{1,2}"
        );
    }

    #[test]
    fn bad_patterns_are_refused_by_name() {
        for bad in [
            "localhost",
            "256.1.1.1",
            "192.168.1",
            "192.168.1.300-301",
            "192.168.1.9-3",
            "192.168.1-3.7",
            "*.1.2.3",
            "192.168.*",
            "192.168.1.{1,x}",
            "192.168.{1,2}.1",
            "192.168.1.{}",
            "192.168.1.-5",
            "fe80::*",
            "1.2.3.4,nope",
        ] {
            let error = WhiteList::parse(bad).expect_err(bad);
            assert!(bad.contains(&error.pattern), "{bad}: {error}");
            assert!(error.to_string().contains(&error.pattern));
        }
    }
}
