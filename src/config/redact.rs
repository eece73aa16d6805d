//! Secrets in settings, masked for printing: `tributary config` output ends up in terminals,
//! tickets and logs. Invariant: masking only ever replaces a secret's characters; the rest of
//! the value is printed as configured, so an operator still recognises it.

/// A PostgreSQL connection string with its password replaced by `****`, in both forms libpq
/// accepts: a URL (`postgres://user:password@host/db`, also `?password=` in its query) and
/// key-value pairs (`host=h password=secret`).
pub fn redact_password(url: &str) -> String {
    const MASK: &str = "****";
    let mut shown = url.to_owned();
    if let Some(scheme_end) = shown.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = shown[authority_start..]
            .find(['/', '?'])
            .map_or(shown.len(), |at| authority_start + at);
        // The last `@` of the authority ends the user info (a password may hold `@`s encoded
        // or not; libpq splits at the last one too).
        if let Some(at) = shown[authority_start..authority_end].rfind('@') {
            let user_info = &shown[authority_start..authority_start + at];
            if let Some(colon) = user_info.find(':') {
                let from = authority_start + colon + 1;
                shown.replace_range(from..authority_start + at, MASK);
            }
        }
    }
    // `password=value` as a key-value pair or a URL query parameter; a quoted value runs to
    // its closing quote.
    let mut search_from = 0;
    while let Some(found) = shown[search_from..].find("password=") {
        let key_start = search_from + found;
        let starts_a_key =
            key_start == 0 || matches!(shown.as_bytes()[key_start - 1], b' ' | b'?' | b'&' | b'\t');
        let value_start = key_start + "password=".len();
        if !starts_a_key {
            search_from = value_start;
            continue;
        }
        let rest = &shown[value_start..];
        let value_len = if let Some(quoted) = rest.strip_prefix('\'') {
            quoted.find('\'').map_or(rest.len(), |end| end + 2)
        } else {
            rest.find([' ', '&', '\t']).unwrap_or(rest.len())
        };
        shown.replace_range(value_start..value_start + value_len, MASK);
        search_from = value_start + MASK.len();
    }
    shown
}
