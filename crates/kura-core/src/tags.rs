//! Object and bucket tags: the limits OSS enforces (oss-api-features.md §2), shared by both
//! dialects, and the `x-oss-tagging` / `x-amz-tagging` header form (`k1=v1&k2=v2`).

use crate::error::{Code, Error, Result};

pub type Tags = Vec<(String, String)>;

/// At most this many tags on an object.
pub const MAX_OBJECT_TAGS: usize = 10;
/// At most this many tags on a bucket.
pub const MAX_BUCKET_TAGS: usize = 20;

fn invalid(msg: impl Into<String>) -> Error {
    Error::msg(Code::InvalidTag, msg)
}

/// Letters (any script), digits, space and `+ - = . _ : /`: what OSS accepts in object tags
/// (`%` and other punctuation are refused).
fn allowed_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '+' | '-' | '=' | '.' | '_' | ':' | '/')
}

fn unique_keys(tags: &[(String, String)]) -> Result<()> {
    let mut keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("Tag keys must be unique."));
    }
    Ok(())
}

/// An object's tags: at most 10, keys of 1..128 characters, values of up to 256, from the
/// allowed characters, keys unique (case-sensitive).
pub fn check_object_tags(tags: &[(String, String)]) -> Result<()> {
    if tags.len() > MAX_OBJECT_TAGS {
        return Err(invalid(format!(
            "Object tags cannot be greater than {MAX_OBJECT_TAGS}."
        )));
    }
    for (k, v) in tags {
        let key_len = k.chars().count();
        if key_len == 0 || key_len > 128 {
            return Err(invalid("A tag key must be 1 to 128 characters long."));
        }
        if v.chars().count() > 256 {
            return Err(invalid("A tag value can be at most 256 characters long."));
        }
        if !k.chars().chain(v.chars()).all(allowed_char) {
            return Err(invalid(
                "Tags may contain letters, digits, spaces and + - = . _ : / only.",
            ));
        }
    }
    unique_keys(tags)
}

/// A bucket's tags: at most 20, keys of 1..64 bytes not starting with `http://`, `https://`,
/// `aliyun` or `acs` (any case), values of up to 128 bytes, keys unique.
pub fn check_bucket_tags(tags: &[(String, String)]) -> Result<()> {
    if tags.len() > MAX_BUCKET_TAGS {
        return Err(invalid(format!(
            "Bucket tags cannot be greater than {MAX_BUCKET_TAGS}."
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > 64 {
            return Err(invalid("A bucket tag key must be 1 to 64 bytes long."));
        }
        let lower = k.to_lowercase();
        if ["http://", "https://", "aliyun", "acs"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            return Err(invalid(
                "A bucket tag key may not start with http://, https://, Aliyun or acs.",
            ));
        }
        if v.len() > 128 {
            return Err(invalid("A bucket tag value can be at most 128 bytes long."));
        }
        // Control characters could not be sent back in XML.
        if k.chars()
            .chain(v.chars())
            .any(|c| c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
        {
            return Err(invalid("Bucket tags may not contain control characters."));
        }
    }
    unique_keys(tags)
}

/// Parses the tagging header: `k1=v1&k2=v2`, each part percent-encoded (`+` is a space); a
/// bare `k` is `k` with an empty value (the C++ SDK's form). `a=b=c` is refused.
pub fn parse_tagging_header(raw: &str) -> Result<Tags> {
    let mut tags = Vec::new();
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        if v.contains('=') {
            return Err(invalid("The tagging header is not a valid query string."));
        }
        let decode = |s: &str| {
            kura_proto::encode::decode_query(s).ok_or_else(|| invalid("The tagging header is not well encoded."))
        };
        tags.push((decode(k)?, decode(v)?));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn object_limits() {
        assert!(check_object_tags(&t(&[("k", ""), ("中文", " +/ "), ("+-.:", "_/")])).is_ok());
        let eleven: Tags = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(check_object_tags(&eleven).unwrap_err().code, Code::InvalidTag);
        assert!(check_object_tags(&eleven[..10]).is_ok());
        assert!(check_object_tags(&t(&[(&"k".repeat(128), &"v".repeat(256))])).is_ok());
        for bad in [
            t(&[(&"k".repeat(129), "v")]),
            t(&[("k", &"v".repeat(257))]),
            t(&[("", "v")]),
            t(&[("%abc", "v")]),
            t(&[("k", "%@abc")]),
            t(&[("a", "1"), ("a", "2")]),
        ] {
            assert_eq!(check_object_tags(&bad).unwrap_err().code, Code::InvalidTag, "{bad:?}");
        }
    }

    #[test]
    fn bucket_limits() {
        assert!(check_bucket_tags(&t(&[("team", "storage"), ("a", "")])).is_ok());
        for bad in [
            t(&[("Aliyun-abc", "v")]),
            t(&[("acs:x", "v")]),
            t(&[("HTTPS://x", "v")]),
            t(&[(&"k".repeat(65), "v")]),
            t(&[("k", &"v".repeat(129))]),
            t(&[("k", "a\u{1}b")]),
        ] {
            assert_eq!(check_bucket_tags(&bad).unwrap_err().code, Code::InvalidTag, "{bad:?}");
        }
    }

    #[test]
    fn header_form() {
        assert_eq!(
            parse_tagging_header("k1=v1&k2&%2B-%2F=%3A%2B%3A").unwrap(),
            t(&[("k1", "v1"), ("k2", ""), ("+-/", ":+:")])
        );
        assert_eq!(parse_tagging_header("").unwrap(), Tags::new());
        assert_eq!(parse_tagging_header("aa=bb=cc").unwrap_err().code, Code::InvalidTag);
        assert_eq!(parse_tagging_header("a=%zz").unwrap_err().code, Code::InvalidTag);
    }
}
