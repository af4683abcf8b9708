//! Percent-encodings. Each set is explicit: OSS never wants `+` for a space.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986 unreserved characters are kept; everything else becomes %XX (uppercase).
/// Used for V4 canonical query strings and for `encoding-type=url` in listings.
pub const RFC3986: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Like [`RFC3986`] but keeps `/`: V4 canonical URIs.
pub const RFC3986_PATH: &AsciiSet = &RFC3986.remove(b'/');

pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

pub fn encode_path(s: &str) -> String {
    utf8_percent_encode(s, RFC3986_PATH).to_string()
}

/// Decodes a path segment (`+` stays `+`). None if the result is not UTF-8.
pub fn decode_path(s: &str) -> Option<String> {
    if !well_formed_percents(s) {
        return None;
    }
    percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned())
}

/// Whether every `%` starts a `%XX` escape. The percent-encoding crate passes a stray `%`
/// through as itself, so `/b/%zz` would name the key `%zz` instead of being refused.
pub fn well_formed_percents(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() || !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Decodes a query component as form data: `+` is a space.
pub fn decode_query(s: &str) -> Option<String> {
    if !well_formed_percents(s) {
        return None;
    }
    let replaced = s.replace('+', " ");
    percent_decode_str(&replaced).decode_utf8().ok().map(|c| c.into_owned())
}

/// Parses a raw query string into decoded (name, value) pairs in order; empty names are dropped.
pub fn parse_query(raw: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for piece in raw.split('&') {
        if piece.is_empty() {
            continue;
        }
        let (n, v) = piece.split_once('=').unwrap_or((piece, ""));
        let name = decode_query(n)?;
        if name.is_empty() {
            continue;
        }
        out.push((name, decode_query(v)?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_percents() {
        for bad in ["%", "%z", "%zz", "a%2", "a%g0b", "%%"] {
            assert!(!well_formed_percents(bad), "{bad}");
            assert_eq!(decode_path(bad), None, "{bad}");
            assert_eq!(decode_query(bad), None, "{bad}");
        }
        assert!(well_formed_percents("a%20b%2Fc"));
    }

    #[test]
    fn encodings() {
        assert_eq!(encode_component("a b+/c~"), "a%20b%2B%2Fc~");
        assert_eq!(encode_path("/bucket/1234+-/123/1.txt"), "/bucket/1234%2B-/123/1.txt");
        assert_eq!(decode_path("a%2Fb+c").as_deref(), Some("a/b+c"));
        let q = parse_query("uploads=&a+b=c%2Bd&=x&&max-keys=100").unwrap();
        assert_eq!(
            q,
            vec![
                ("uploads".into(), "".into()),
                ("a b".into(), "c+d".into()),
                ("max-keys".into(), "100".into())
            ]
        );
    }
}
