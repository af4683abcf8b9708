//! What both dialects share between classification and rendering: listing parameters,
//! conditional requests, ranges, Content-MD5, and the stored headers of an object.

use base64::Engine;
use kura_core::model::{ObjectHeaders, ObjectRecord};
use kura_core::service::MAX_LIST;
use kura_core::{Code, Error, Result};
use kura_proto::encode::encode_component;
use kura_proto::etag;
use kura_proto::timefmt::parse_http_date;

use crate::request::Ctx;
use crate::response::{set, set_dynamic, Resp};

/// `encoding-type=url` asks for keys and prefixes URL-encoded in listings.
pub fn url_encoding(ctx: &Ctx) -> bool {
    ctx.query("encoding-type") == Some("url")
}

/// Control characters cannot travel in XML 1.0 (not even as character references), yet OSS
/// keys may hold them. A response that must carry such a key is URL-encoded and says so with
/// `<EncodingType>url</EncodingType>`, which the SDKs honour, instead of being unparseable.
pub fn xml_unsafe(s: &str) -> bool {
    s.chars()
        .any(|c| (c as u32) < 0x20 || matches!(c, '\u{7f}' | '\u{fffe}' | '\u{ffff}'))
}

pub fn url_encoding_for<'a>(ctx: &Ctx, mut names: impl Iterator<Item = &'a str>) -> bool {
    url_encoding(ctx) || names.any(xml_unsafe)
}

pub fn enc(s: &str, url: bool) -> String {
    if url {
        encode_component(s)
    } else {
        s.to_string()
    }
}

pub fn parse_max(ctx: &Ctx, name: &str, default: usize) -> Result<usize> {
    match ctx.query(name) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Ok((n as usize).min(MAX_LIST)),
            Ok(0) => Ok(0),
            _ => Err(Error::invalid_argument(
                format!("{name} must be an integer between 0 and 1000."),
                name,
                v,
            )),
        },
    }
}

pub fn content_md5(ctx: &Ctx) -> Result<Option<[u8; 16]>> {
    match ctx.header("content-md5") {
        None => Ok(None),
        Some(v) => base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
            .and_then(|d| <[u8; 16]>::try_from(d.as_slice()).ok())
            .map(Some)
            .ok_or_else(|| Error::new(Code::InvalidDigest)),
    }
}

pub fn check_xml_md5(ctx: &Ctx, body: &[u8]) -> Result<()> {
    use md5::{Digest, Md5};
    if let Some(expected) = content_md5(ctx)? {
        let got: [u8; 16] = Md5::digest(body).into();
        if got != expected {
            return Err(Error::new(Code::InvalidDigest));
        }
    }
    Ok(())
}

pub fn is_true(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Evaluates If-Match / If-None-Match / If-(Un)Modified-Since against an object. The
/// `prefix` is "" for GET and "x-oss-copy-source-" for copy sources.
pub fn check_conditions(ctx: &Ctx, rec: &ObjectRecord, prefix: &str, not_modified_is_error: bool) -> Result<()> {
    let h = |n: &str| ctx.header(&format!("{prefix}{n}"));
    let s3_etag = rec.s3_etag.as_deref().map(str::to_ascii_uppercase);
    let matches = |list: &str| {
        list.split(',').any(|e| {
            let e = etag::normalize(e);
            e == "*" || e == rec.etag || Some(&e) == s3_etag.as_ref()
        })
    };
    let modified = rec.last_modified_ms / 1000;
    if let Some(v) = h("if-match") {
        if !matches(v) {
            return Err(Error::new(Code::PreconditionFailed));
        }
    } else if let Some(t) = h("if-unmodified-since").and_then(parse_http_date) {
        if modified > t {
            return Err(Error::new(Code::PreconditionFailed));
        }
    }
    let not_modified = || {
        if not_modified_is_error {
            Error::new(Code::PreconditionFailed)
        } else {
            let s3 = rec.s3_etag.clone().unwrap_or_else(|| rec.etag.to_ascii_lowercase());
            Error::new(Code::NotModified).with(|d| {
                d.not_modified = Some((
                    etag::quoted(&rec.etag),
                    format!("\"{s3}\""),
                    kura_proto::timefmt::http_date(rec.last_modified_ms),
                ))
            })
        }
    };
    if let Some(v) = h("if-none-match") {
        if matches(v) {
            return Err(not_modified());
        }
    } else if let Some(t) = h("if-modified-since").and_then(parse_http_date) {
        if modified <= t {
            return Err(not_modified());
        }
    }
    Ok(())
}

/// `bytes=a-b` / `bytes=a-` / `bytes=-n`, first range only. OSS ignores an unsatisfiable
/// range (200, whole object) unless `x-oss-range-behavior: standard` asks for 416 and for
/// ends past the size to be truncated.
pub fn parse_range(value: &str, size: u64, standard: bool) -> Result<Option<(u64, u64)>> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    let first = spec.split(',').next().unwrap_or("").trim();
    let Some((a, b)) = first.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else { return Ok(None) };
        if n == 0 || size == 0 {
            return if standard {
                Err(Error::new(Code::InvalidRange))
            } else {
                Ok(None)
            };
        }
        return Ok(Some((size.saturating_sub(n), size)));
    }
    let Ok(start) = a.parse::<u64>() else { return Ok(None) };
    let end_incl = if b.is_empty() {
        size.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return Ok(None),
        }
    };
    if start >= size {
        return if standard {
            Err(Error::new(Code::InvalidRange))
        } else {
            Ok(None)
        };
    }
    if end_incl >= size {
        return if standard { Ok(Some((start, size))) } else { Ok(None) };
    }
    Ok(Some((start, end_incl + 1)))
}

/// The headers stored with an object, user metadata under `meta_prefix`, then the
/// `response-*` overrides of the query (both dialects).
pub fn stored_headers(r: &mut Resp, hd: &ObjectHeaders, ctx: &Ctx, meta_prefix: &str) {
    set(r, "content-type", &hd.content_type);
    for (name, value) in [
        ("cache-control", &hd.cache_control),
        ("content-disposition", &hd.content_disposition),
        ("content-encoding", &hd.content_encoding),
        ("content-language", &hd.content_language),
        ("expires", &hd.expires),
    ] {
        if let Some(v) = value {
            set(r, name, v);
        }
    }
    for (n, v) in &hd.user_meta {
        set_dynamic(r, &format!("{meta_prefix}{n}"), v);
    }
    for (param, header) in [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(v) = ctx.query(param) {
            set(r, header, v);
        }
    }
}

/// The body length a request declares: with `aws_chunked` (S3) the decoded length of an
/// aws-chunked body first, else Content-Length.
pub fn declared_len(ctx: &Ctx, aws_chunked: bool) -> Option<u64> {
    aws_chunked
        .then(|| ctx.header("x-amz-decoded-content-length"))
        .flatten()
        .or_else(|| ctx.header("content-length"))
        .and_then(|v| v.trim().parse().ok())
}

/// `Expect: 100-continue`: the client sends the body only once told to go on.
pub fn expects_continue(ctx: &Ctx) -> bool {
    ctx.header("expect")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// The headers stored with a new object or upload: the standard ones, and user metadata
/// under `meta_prefix` (`x-oss-meta-` or `x-amz-meta-`), sorted. `default_type` is the
/// dialect's Content-Type when none is sent.
pub fn object_headers(ctx: &Ctx, meta_prefix: &str, default_type: &str) -> ObjectHeaders {
    let opt = |n: &str| ctx.header(n).map(|s| s.to_string());
    let mut user_meta: Vec<(String, String)> = ctx
        .headers
        .iter()
        .filter_map(|(n, v)| n.strip_prefix(meta_prefix).map(|m| (m.to_string(), v.clone())))
        .collect();
    user_meta.sort();
    ObjectHeaders {
        content_type: ctx
            .header("content-type")
            .filter(|v| !v.is_empty())
            .unwrap_or(default_type)
            .to_string(),
        cache_control: opt("cache-control"),
        content_disposition: opt("content-disposition"),
        content_encoding: opt("content-encoding"),
        content_language: opt("content-language"),
        expires: opt("expires"),
        user_meta,
    }
}

/// The byte range an UploadPartCopy takes from its source (`bytes=first-last`, the last
/// optional in OSS), as `[start, end)`; the whole source without the header. `header` names
/// the dialect's header for the error.
pub fn copy_source_range(ctx: &Ctx, header: &str, size: u64) -> Result<(u64, u64)> {
    let Some(v) = ctx.header(header) else {
        return Ok((0, size));
    };
    let bad = || {
        Error::invalid_argument(
            format!("The {header} value must be of the form bytes=first-last."),
            header,
            v,
        )
    };
    let (a, b) = v
        .trim()
        .strip_prefix("bytes=")
        .and_then(|s| s.split_once('-'))
        .ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end = if b.trim().is_empty() {
        size
    } else {
        b.trim()
            .parse::<u64>()
            .ok()
            .and_then(|e| e.checked_add(1))
            .ok_or_else(bad)?
    };
    if start >= end || end > size {
        return Err(Error::new(Code::InvalidRange));
    }
    Ok((start, end))
}

/// ListParts' `part-number-marker` (0 when absent).
pub fn part_number_marker(ctx: &Ctx) -> Result<u32> {
    match ctx.query("part-number-marker") {
        None => Ok(0),
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| Error::invalid_argument("part-number-marker must be an integer.", "part-number-marker", v)),
    }
}

/// The tagging header (`x-oss-tagging` / `x-amz-tagging`), parsed; no tags when absent.
pub fn header_tags(ctx: &Ctx, name: &str) -> Result<Vec<(String, String)>> {
    Ok(ctx
        .header(name)
        .map(kura_core::tags::parse_tagging_header)
        .transpose()?
        .unwrap_or_default())
}

/// A copy's tags: the source's (None) unless the tagging directive is REPLACE (any case),
/// then exactly the tagging header's.
pub fn copy_tags(ctx: &Ctx, directive: &str, tagging: &str) -> Result<Option<Vec<(String, String)>>> {
    match ctx.header(directive).map(str::trim) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("COPY") => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("REPLACE") => Ok(Some(header_tags(ctx, tagging)?)),
        Some(v) => Err(kura_core::Error::invalid_argument(
            "The tagging directive must be COPY or REPLACE.",
            directive,
            v,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100, false).unwrap(), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100, false).unwrap(), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100, false).unwrap(), Some((90, 100)));
        assert_eq!(parse_range("bytes=0-1000", 1000, false).unwrap(), None);
        assert_eq!(parse_range("bytes=0-1000", 1000, true).unwrap(), Some((0, 1000)));
        assert_eq!(parse_range("bytes=1000-", 1000, false).unwrap(), None);
        assert_eq!(
            parse_range("bytes=1000-", 1000, true).unwrap_err().code,
            Code::InvalidRange
        );
        assert_eq!(parse_range("bytes=5-2", 100, false).unwrap(), None);
        assert_eq!(parse_range("items=0-1", 100, false).unwrap(), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100, false).unwrap(), Some((0, 2)));
    }
}
