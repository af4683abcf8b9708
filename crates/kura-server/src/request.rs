//! Turning an HTTP request into what the rest of the pipeline needs: addressing (path-style or
//! virtual host), decoded query, lowercase headers, and the body as a [`BodySource`].

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use kura_core::{BodySource, Code, Error, Result};
use kura_proto::encode;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::auth::Payload;

/// Largest XML request body (a 10,000-part Complete is about 1 MB).
pub const MAX_XML_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct Ctx {
    pub method: String,
    /// The whole request path, percent-decoded (S3 signs it re-encoded).
    pub path: String,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// Decoded (name, value) pairs in order; empty names dropped.
    pub query: Vec<(String, String)>,
    /// Lowercase names, values as received.
    pub headers: Vec<(String, String)>,
    /// What the signature says of the body; set once the request is authenticated.
    pub payload: Payload,
}

impl Ctx {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn has_query(&self, name: &str) -> bool {
        self.query.iter().any(|(n, _)| n == name)
    }
    /// The value of a query param; empty means absent (oss2 sends empty listing params).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    pub fn query_raw(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn bucket(&self) -> &str {
        self.bucket.as_deref().unwrap_or("")
    }
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("")
    }
}

/// A header value as text: UTF-8 when it is (Go SDKs send UTF-8 metadata as raw bytes), else
/// Latin-1, byte for byte. Signing sees the same text either way.
pub fn header_text(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => raw.iter().map(|b| char::from(*b)).collect(),
    }
}

/// Headers that sign or act besides `x-oss-*` / `x-amz-*`, which may appear only once.
const SINGLE_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "date",
    "content-md5",
    "content-type",
    "content-length",
    "content-encoding",
    "content-disposition",
    "cache-control",
    "expires",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "expect",
];

/// Parses method, addressing, query and headers. `domain` enables virtual-host addressing for
/// `<bucket>.<domain>`; every other Host is path-style.
pub fn parse(parts: &http::request::Parts, domain: Option<&str>) -> Result<Ctx> {
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        headers.push((name.as_str().to_string(), header_text(value.as_bytes())));
    }
    // A repeated header that signs or acts is refused: the signers join the values while the
    // handlers read one, so the two could disagree on what was asked.
    for name in parts.headers.keys() {
        let n = name.as_str();
        let acting = n.starts_with("x-oss-") || n.starts_with("x-amz-") || SINGLE_HEADERS.contains(&n);
        if acting && parts.headers.get_all(name).iter().nth(1).is_some() {
            return Err(Error::invalid_argument(
                format!("The header {n} appears more than once."),
                n,
                "",
            ));
        }
    }
    let bad_uri = || Error::new(Code::InvalidURI);
    if !encode::well_formed_percents(parts.uri.path()) || !encode::well_formed_percents(parts.uri.query().unwrap_or(""))
    {
        return Err(bad_uri());
    }
    let query = encode::parse_query(parts.uri.query().unwrap_or(""))
        .ok_or_else(|| Error::msg(Code::InvalidArgument, "The query string is not valid UTF-8."))?;
    let raw_path = parts.uri.path();
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.host())
        .unwrap_or("");
    let host_name = host.rsplit_once(':').map_or(
        host,
        |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host },
    );
    let virtual_bucket = domain
        .and_then(|d| host_name.strip_suffix(d))
        .and_then(|b| b.strip_suffix('.'))
        .filter(|b| !b.is_empty());

    let (bucket, key_raw) = match virtual_bucket {
        Some(b) => (
            b.to_string(),
            raw_path.strip_prefix('/').unwrap_or(raw_path).to_string(),
        ),
        None => {
            let rest = raw_path.strip_prefix('/').unwrap_or(raw_path);
            // `//` (the C++ SDK's ListBuckets) and `/` are the service root.
            if rest.trim_start_matches('/').is_empty() {
                (String::new(), String::new())
            } else {
                let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
                (b.to_string(), k.to_string())
            }
        }
    };
    let bucket = if bucket.is_empty() {
        None
    } else {
        Some(encode::decode_path(&bucket).ok_or_else(|| Error::new(Code::InvalidBucketName))?)
    };
    let key = if key_raw.is_empty() {
        None
    } else {
        Some(
            encode::decode_path(&key_raw)
                .ok_or_else(|| Error::msg(Code::InvalidObjectName, "The object name is not valid UTF-8."))?,
        )
    };
    Ok(Ctx {
        path: encode::decode_path(raw_path).unwrap_or_else(|| raw_path.to_string()),
        method: parts.method.as_str().to_string(),
        bucket,
        key,
        query,
        headers,
        payload: Payload::Unsigned,
    })
}

/// How long a request body may go without sending anything.
pub const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A hyper body as the core's body source. Trailers are skipped. A body that stalls for
/// [`BODY_IDLE_TIMEOUT`] ends with RequestTimeout.
pub struct HyperBody {
    inner: Incoming,
    /// Set once the body has been read to its end.
    finished: Arc<AtomicBool>,
}

impl HyperBody {
    /// The body, and a flag that says later whether it was read to the end.
    pub fn new(inner: Incoming) -> (Self, Arc<AtomicBool>) {
        let finished = Arc::new(AtomicBool::new(hyper::body::Body::is_end_stream(&inner)));
        (
            HyperBody {
                inner,
                finished: finished.clone(),
            },
            finished,
        )
    }
}

impl BodySource for HyperBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        loop {
            let frame = match tokio::time::timeout(BODY_IDLE_TIMEOUT, self.inner.frame()).await {
                Ok(f) => f,
                Err(_) => return Some(Err(Error::new(Code::RequestTimeout))),
            };
            match frame {
                None => {
                    self.finished.store(true, Ordering::Relaxed);
                    return None;
                }
                Some(Err(e)) => {
                    return Some(Err(Error::msg(
                        Code::IncompleteBody,
                        format!("The request body could not be read: {e}"),
                    )))
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
            }
        }
    }
}

/// Reads an XML request body whole (at most [`MAX_XML_BODY`]) and checks it against the
/// signed payload hash, when the signature names one.
pub async fn read_xml_body(body: &mut impl BodySource, ctx: &Ctx) -> Result<Bytes> {
    let raw = read_small(body, MAX_XML_BODY).await?;
    crate::auth::check_payload(&ctx.payload, &raw)?;
    Ok(raw)
}

/// Reads a small body whole, refusing more than `limit` bytes.
pub async fn read_small(body: &mut impl BodySource, limit: usize) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next_chunk().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Err(Error::msg(
                Code::InvalidArgument,
                format!("The request body exceeds {limit} bytes."),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(method: &str, uri: &str, host: &str, domain: Option<&str>) -> Result<Ctx> {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        parse(&parts, domain)
    }

    #[test]
    fn path_style_addressing() {
        let c = ctx("GET", "/", "127.0.0.1:9000", None).unwrap();
        assert_eq!((c.bucket, c.key), (None, None));
        let c = ctx("GET", "//", "127.0.0.1:9000", None).unwrap();
        assert_eq!((c.bucket, c.key), (None, None), "the C++ SDK's ListBuckets");
        let c = ctx("GET", "/b/", "h", None).unwrap();
        assert_eq!((c.bucket.as_deref(), c.key), (Some("b"), None));
        let c = ctx("GET", "/b", "h", None).unwrap();
        assert_eq!((c.bucket.as_deref(), c.key), (Some("b"), None));
        let c = ctx("GET", "/b/a%2Fb/c+d%20e", "h", None).unwrap();
        assert_eq!(c.key.as_deref(), Some("a/b/c+d e"), "%2F decodes, + stays in paths");
        let c = ctx("GET", "/b/..%2F..%2Fetc", "h", None).unwrap();
        assert_eq!(c.key.as_deref(), Some("../../etc"));
        assert!(ctx("GET", "/b/%FF", "h", None).is_err(), "keys must be UTF-8");
        assert_eq!(ctx("GET", "/b/%zz", "h", None).unwrap_err().code, Code::InvalidURI);
        let twice = http::Request::builder()
            .uri("/b/k")
            .header("host", "h")
            .header("x-oss-object-acl", "private")
            .header("x-oss-object-acl", "public-read")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(parse(&twice, None).unwrap_err().code, Code::InvalidArgument);
        assert_eq!(
            ctx("GET", "/b/k?prefix=%2", "h", None).unwrap_err().code,
            Code::InvalidURI
        );
    }

    #[test]
    fn virtual_host_addressing() {
        let c = ctx("GET", "/dir/key", "mybucket.example.local:9000", Some("example.local")).unwrap();
        assert_eq!(
            (c.bucket.as_deref(), c.key.as_deref()),
            (Some("mybucket"), Some("dir/key"))
        );
        let c = ctx("GET", "/mybucket/key", "example.local", Some("example.local")).unwrap();
        assert_eq!((c.bucket.as_deref(), c.key.as_deref()), (Some("mybucket"), Some("key")));
        let c = ctx("GET", "/b/k", "127.0.0.1", Some("example.local")).unwrap();
        assert_eq!(c.bucket.as_deref(), Some("b"));
    }

    #[test]
    fn query_forms() {
        let c = ctx("POST", "/b/k?uploads=", "h", None).unwrap();
        assert!(c.has_query("uploads"));
        let c = ctx("POST", "/b/k?uploads", "h", None).unwrap();
        assert!(c.has_query("uploads"));
        let c = ctx(
            "GET",
            "/b/?prefix=&marker=&max-keys=100&=x&&encoding-type=url",
            "h",
            None,
        )
        .unwrap();
        assert_eq!(c.query("prefix"), None, "empty means absent");
        assert_eq!(c.query("max-keys"), Some("100"));
        assert_eq!(c.query("encoding-type"), Some("url"));
        let c = ctx("GET", "/b/?prefix=a+b%2Bc", "h", None).unwrap();
        assert_eq!(c.query("prefix"), Some("a b+c"), "+ is a space in queries");
    }
}
