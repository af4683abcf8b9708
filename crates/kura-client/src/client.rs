//! The OSS client: signing (V4 by default, V1 on request), addressing, retries with backoff,
//! error decoding, and the calls the uploader, downloader and CLI need. Wire shapes and
//! signing come from `kura-proto`, the same code the server verifies with.

use std::time::Duration;

use bytes::Bytes;
use kura_proto::{crc64, encode, sign, timefmt, xml};
use reqwest::Method;

use crate::error::{Error, Result, ServiceError};

#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub session_token: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureVersion {
    V1,
    V4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `http://host/bucket/key`
    PathStyle,
    /// `http://bucket.host/key`
    VirtualHost,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// `http://127.0.0.1:9000` or `https://oss-cn-hangzhou.aliyuncs.com`; `http://` is assumed
    /// when no scheme is given.
    pub endpoint: String,
    pub region: String,
    pub credentials: Credentials,
    pub signature: SignatureVersion,
    pub addressing: Addressing,
    /// Retries after the first attempt, for idempotent calls and retryable errors.
    pub max_retries: u32,
    pub connect_timeout: Duration,
    /// Longest pause between two reads of a response (or writes of a request).
    pub read_timeout: Duration,
}

impl Config {
    /// Credentials from `OSS_ACCESS_KEY_ID` / `OSS_ACCESS_KEY_SECRET` (and `OSS_SESSION_TOKEN`),
    /// like the official SDKs. Path-style addressing when the endpoint host is an IP address or
    /// `localhost`, virtual-host otherwise.
    pub fn from_env(endpoint: &str, region: &str) -> Result<Config> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let (Some(id), Some(secret)) = (var("OSS_ACCESS_KEY_ID"), var("OSS_ACCESS_KEY_SECRET")) else {
            return Err(Error::Invalid("set OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET".into()));
        };
        Ok(Config::new(
            endpoint,
            region,
            Credentials {
                access_key_id: id,
                access_key_secret: secret,
                session_token: var("OSS_SESSION_TOKEN"),
            },
        ))
    }

    pub fn new(endpoint: &str, region: &str, credentials: Credentials) -> Config {
        let endpoint = endpoint.trim_end_matches('/');
        let endpoint = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        let host = host_of(&endpoint);
        let ip_or_local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[');
        Config {
            endpoint,
            region: region.to_string(),
            credentials,
            signature: SignatureVersion::V4,
            addressing: if ip_or_local {
                Addressing::PathStyle
            } else {
                Addressing::VirtualHost
            },
            max_retries: 3,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

fn host_of(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.starts_with('[') {
        return authority.split(']').next().map_or(authority, |h| &h[..h.len()]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// A request before signing.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    pub method: Method,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Safe to send again after a failure whose outcome is unknown.
    pub idempotent: bool,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, bucket: Option<&'a str>, key: Option<&'a str>) -> Self {
        let idempotent = method != Method::POST;
        Call {
            method,
            bucket,
            key,
            query: vec![],
            headers: vec![],
            body: Bytes::new(),
            idempotent,
        }
    }
    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_string(), value.into()));
        self
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
    pub fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }
}

/// What HEAD tells about an object.
#[derive(Clone, Debug)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: String,
    pub crc64: Option<u64>,
    pub last_modified: String,
    pub content_type: String,
    pub object_type: String,
}

#[derive(Clone, Debug)]
pub struct WriteResult {
    /// Unquoted.
    pub etag: String,
    pub crc64: Option<u64>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    cfg: Config,
}

fn header_str(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn crc_header(r: &reqwest::Response) -> Option<u64> {
    header_str(r, "x-oss-hash-crc64ecma").and_then(|v| v.parse().ok())
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

impl Client {
    pub fn new(cfg: Config) -> Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        Ok(Client { http, cfg })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn url(&self, call: &Call<'_>) -> String {
        let key_path = call.key.map(encode::encode_path).unwrap_or_default();
        let base = match (self.cfg.addressing, call.bucket) {
            (Addressing::VirtualHost, Some(b)) => {
                let (scheme, rest) = self
                    .cfg
                    .endpoint
                    .split_once("://")
                    .unwrap_or(("http", &self.cfg.endpoint));
                format!("{scheme}://{b}.{rest}/{key_path}")
            }
            (_, Some(b)) if call.key.is_some() => format!("{}/{b}/{key_path}", self.cfg.endpoint),
            (_, Some(b)) => format!("{}/{b}/", self.cfg.endpoint),
            (_, None) => format!("{}/", self.cfg.endpoint),
        };
        if call.query.is_empty() {
            return base;
        }
        let qs: Vec<String> = call
            .query
            .iter()
            .map(|(n, v)| {
                if v.is_empty() {
                    encode::encode_component(n)
                } else {
                    format!("{}={}", encode::encode_component(n), encode::encode_component(v))
                }
            })
            .collect();
        format!("{base}?{}", qs.join("&"))
    }

    /// Adds the date, token and Authorization headers.
    fn sign(&self, call: &Call<'_>) -> Vec<(String, String)> {
        let creds = &self.cfg.credentials;
        let mut headers = call.headers.clone();
        if let Some(t) = &creds.session_token {
            headers.push(("x-oss-security-token".into(), t.clone()));
        }
        match self.cfg.signature {
            SignatureVersion::V1 => {
                let date = timefmt::http_date(timefmt::now_millis());
                headers.push(("date".into(), date.clone()));
                let resource = sign::v1_canonical_resource(call.bucket, call.key, &call.query);
                let sts = sign::v1_string_to_sign(call.method.as_str(), &headers, &date, &resource);
                let sig = sign::v1_signature(&creds.access_key_secret, &sts);
                headers.push(("authorization".into(), format!("OSS {}:{sig}", creds.access_key_id)));
            }
            SignatureVersion::V4 => {
                let stamp = timefmt::iso8601_basic(timefmt::now_millis());
                let date = stamp[..8].to_string();
                headers.push(("x-oss-date".into(), stamp.clone()));
                headers.push(("x-oss-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
                let cr = sign::v4_canonical_request(
                    call.method.as_str(),
                    &sign::v4_canonical_uri(call.bucket, call.key),
                    &sign::v4_canonical_query(&call.query),
                    &headers,
                    &[],
                    "UNSIGNED-PAYLOAD",
                    false,
                );
                let scope = sign::v4_scope(&date, &self.cfg.region, "oss");
                let sts = sign::v4_string_to_sign(&stamp, &scope, &cr);
                let sig = sign::v4_signature(&creds.access_key_secret, &date, &self.cfg.region, "oss", &sts);
                headers.push((
                    "authorization".into(),
                    format!(
                        "OSS4-HMAC-SHA256 Credential={}/{scope},Signature={sig}",
                        creds.access_key_id
                    ),
                ));
            }
        }
        headers
    }

    async fn decode_error(r: reqwest::Response, is_head: bool) -> Error {
        let status = r.status().as_u16();
        let request_id = header_str(&r, "x-oss-request-id").unwrap_or_default();
        let text = if is_head {
            header_str(&r, "x-oss-err")
                .and_then(|e| decode_base64(&e))
                .and_then(|b| String::from_utf8(b).ok())
        } else {
            r.text().await.ok()
        };
        let body = text.as_deref().and_then(|t| xml::from_xml::<xml::ErrorBody>(t).ok());
        let (code, message) = match body {
            Some(b) => (b.code, b.message),
            None => (
                match status {
                    304 => "NotModified".into(),
                    404 => "NotFound".into(),
                    412 => "PreconditionFailed".into(),
                    _ => format!("HTTP{status}"),
                },
                String::new(),
            ),
        };
        Error::Service(Box::new(ServiceError {
            status,
            code,
            message,
            request_id,
        }))
    }

    /// Sends a call, retrying retryable failures of idempotent calls with exponential
    /// backoff (200 ms x 2^n, jittered). Non-2xx answers become [`Error::Service`].
    pub async fn send(&self, call: &Call<'_>) -> Result<reqwest::Response> {
        let mut attempt = 0u32;
        loop {
            let result = self.send_once(call).await;
            match result {
                Err(e)
                    if attempt < self.cfg.max_retries
                        && e.is_retryable()
                        && (call.idempotent || !matches!(e, Error::Transport(_))) =>
                {
                    let base = 200u64 << attempt.min(6);
                    let jitter = rand::random::<u64>() % (base / 2 + 1);
                    tracing::debug!(error = %e, attempt, "retrying");
                    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<reqwest::Response> {
        if let Some(k) = call.key {
            check_key(k)?;
        }
        let headers = self.sign(call);
        let mut rb = self.http.request(call.method.clone(), self.url(call));
        for (n, v) in &headers {
            rb = rb.header(n.as_str(), v.as_str());
        }
        let r = rb.body(call.body.clone()).send().await?;
        if r.status().is_success() {
            Ok(r)
        } else {
            Err(Self::decode_error(r, call.method == Method::HEAD).await)
        }
    }

    async fn send_xml<T: serde::de::DeserializeOwned>(&self, call: &Call<'_>) -> Result<T> {
        let r = self.send(call).await?;
        let text = r.text().await?;
        xml::from_xml(&text).map_err(|e| Error::Invalid(format!("unexpected response body: {e}")))
    }

    // ---- buckets ----

    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.send(&Call::new(Method::PUT, Some(bucket), None)).await.map(drop)
    }

    pub async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.send(&Call::new(Method::DELETE, Some(bucket), None))
            .await
            .map(drop)
    }

    pub async fn list_buckets(&self) -> Result<Vec<xml::BucketEntry>> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let call = Call::new(Method::GET, None, None)
                .query("marker", marker.clone())
                .query("max-keys", "1000");
            let page: xml::ListAllMyBucketsResult = self.send_xml(&call).await?;
            out.extend(page.buckets.buckets);
            match page.next_marker {
                Some(m) if page.is_truncated && !m.is_empty() => marker = m,
                _ => return Ok(out),
            }
        }
    }

    // ---- objects ----

    /// PutObject; the server's CRC-64 must match the bytes sent.
    pub async fn put_object(&self, bucket: &str, key: &str, body: Bytes) -> Result<WriteResult> {
        let local = crc64::checksum(&body);
        let r = self
            .send(&Call::new(Method::PUT, Some(bucket), Some(key)).body(body))
            .await?;
        let result = WriteResult {
            etag: header_str(&r, "etag").unwrap_or_default().trim_matches('"').to_string(),
            crc64: crc_header(&r),
        };
        check_crc(result.crc64, local, || format!("PutObject {key}"))?;
        Ok(result)
    }

    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        let r = self.send(&Call::new(Method::HEAD, Some(bucket), Some(key))).await?;
        Ok(ObjectMeta {
            size: header_str(&r, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            etag: header_str(&r, "etag").unwrap_or_default().trim_matches('"').to_string(),
            crc64: crc_header(&r),
            last_modified: header_str(&r, "last-modified").unwrap_or_default(),
            content_type: header_str(&r, "content-type").unwrap_or_default(),
            object_type: header_str(&r, "x-oss-object-type").unwrap_or_default(),
        })
    }

    /// GetObject of `[start, end)` (None: the whole object), only if the ETag still matches.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<reqwest::Response> {
        let mut call = Call::new(Method::GET, Some(bucket), Some(key));
        if let Some((s, e)) = range {
            call = call
                .header("range", format!("bytes={}-{}", s, e - 1))
                .header("x-oss-range-behavior", "standard");
        }
        if let Some(etag) = if_match {
            call = call.header("if-match", format!("\"{etag}\""));
        }
        self.send(&call).await
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.send(&Call::new(Method::DELETE, Some(bucket), Some(key)))
            .await
            .map(drop)
    }

    /// One ListObjectsV2 page.
    pub async fn list_objects_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: &str,
        token: Option<&str>,
        max: u32,
    ) -> Result<xml::ListBucketResult> {
        let mut call = Call::new(Method::GET, Some(bucket), None)
            .query("list-type", "2")
            .query("prefix", prefix)
            .query("delimiter", delimiter)
            .query("max-keys", max.to_string())
            .query("encoding-type", "url");
        if let Some(t) = token {
            call = call.query("continuation-token", t);
        }
        let mut page: xml::ListBucketResult = self.send_xml(&call).await?;
        if page.encoding_type.as_deref() == Some("url") {
            let dec = |s: &mut String| {
                if let Some(d) = encode::decode_path(s) {
                    *s = d;
                }
            };
            page.contents.iter_mut().for_each(|c| dec(&mut c.key));
            page.common_prefixes.iter_mut().for_each(|p| dec(&mut p.prefix));
        }
        Ok(page)
    }

    // ---- multipart ----

    pub async fn initiate_multipart_upload(&self, bucket: &str, key: &str) -> Result<String> {
        // Not retried after a lost answer: that would leave an upload nobody knows about.
        let call = Call::new(Method::POST, Some(bucket), Some(key)).query("uploads", "");
        let r: xml::InitiateMultipartUploadResult = self.send_xml(&call).await?;
        Ok(r.upload_id)
    }

    /// UploadPart; the server's CRC-64 must match the bytes sent.
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> Result<WriteResult> {
        let local = crc64::checksum(&body);
        let call = Call::new(Method::PUT, Some(bucket), Some(key))
            .query("partNumber", number.to_string())
            .query("uploadId", upload_id)
            .body(body);
        let r = self.send(&call).await?;
        let result = WriteResult {
            etag: header_str(&r, "etag").unwrap_or_default().trim_matches('"').to_string(),
            crc64: crc_header(&r),
        };
        check_crc(result.crc64, local, || format!("part {number}"))?;
        Ok(result)
    }

    /// CompleteMultipartUpload with (part number, unquoted ETag) in ascending order.
    /// Retried like an idempotent call: Kura answers a repeated Complete with the same result.
    pub async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<WriteResult> {
        let body = xml::to_xml(&xml::CompleteMultipartUpload {
            parts: parts
                .iter()
                .map(|(n, e)| xml::CompletePart {
                    part_number: n.to_string(),
                    etag: format!("\"{e}\""),
                })
                .collect(),
        });
        let call = Call::new(Method::POST, Some(bucket), Some(key))
            .query("uploadId", upload_id)
            .body(Bytes::from(body))
            .idempotent(true);
        let r = self.send(&call).await?;
        Ok(WriteResult {
            etag: header_str(&r, "etag").unwrap_or_default().trim_matches('"').to_string(),
            crc64: crc_header(&r),
        })
    }

    pub async fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let call = Call::new(Method::DELETE, Some(bucket), Some(key)).query("uploadId", upload_id);
        self.send(&call).await.map(drop)
    }

    /// One ListParts page after `marker`.
    pub async fn list_parts_page(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max: u32,
    ) -> Result<xml::ListPartsResult> {
        let call = Call::new(Method::GET, Some(bucket), Some(key))
            .query("uploadId", upload_id)
            .query("part-number-marker", marker.to_string())
            .query("max-parts", max.to_string());
        self.send_xml(&call).await
    }

    /// Every part of an upload, paging through ListParts.
    pub async fn list_all_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Vec<xml::PartEntry>> {
        let mut out = Vec::new();
        let mut marker = 0;
        loop {
            let page = self.list_parts_page(bucket, key, upload_id, marker, 1000).await?;
            out.extend(page.parts);
            if !page.is_truncated || page.next_part_number_marker <= marker {
                return Ok(out);
            }
            marker = page.next_part_number_marker;
        }
    }

    /// One ListMultipartUploads page.
    pub async fn list_uploads_page(
        &self,
        bucket: &str,
        prefix: &str,
        key_marker: &str,
        upload_id_marker: &str,
        max: u32,
    ) -> Result<xml::ListMultipartUploadsResult> {
        let call = Call::new(Method::GET, Some(bucket), None)
            .query("uploads", "")
            .query("prefix", prefix)
            .query("key-marker", key_marker)
            .query("upload-id-marker", upload_id_marker)
            .query("max-uploads", max.to_string())
            .query("encoding-type", "url");
        let mut page: xml::ListMultipartUploadsResult = self.send_xml(&call).await?;
        if page.encoding_type.as_deref() == Some("url") {
            for u in &mut page.uploads {
                if let Some(d) = encode::decode_path(&u.key) {
                    u.key = d;
                }
            }
            if let Some(d) = encode::decode_path(&page.next_key_marker) {
                page.next_key_marker = d;
            }
        }
        Ok(page)
    }

    /// Every unfinished upload in a bucket (under `prefix`).
    pub async fn list_all_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<xml::UploadEntry>> {
        let mut out = Vec::new();
        let (mut km, mut um) = (String::new(), String::new());
        loop {
            let page = self.list_uploads_page(bucket, prefix, &km, &um, 1000).await?;
            out.extend(page.uploads);
            let stuck = page.next_key_marker == km && page.next_upload_id_marker == um;
            if !page.is_truncated || stuck {
                return Ok(out);
            }
            km = page.next_key_marker;
            um = page.next_upload_id_marker;
        }
    }
}

/// Keys this client can address. URL parsers fold `.` and `..` path segments away (even
/// percent-encoded ones), which would silently address another key; refuse them instead.
fn check_key(key: &str) -> Result<()> {
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(Error::Invalid(format!(
            "object key {key:?} must not start with / or \\"
        )));
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(Error::Invalid(format!(
            "object key {key:?} has a . or .. path segment, which HTTP clients cannot send unchanged"
        )));
    }
    Ok(())
}

/// A CRC the server reported must equal ours; a server that reports none is not checked here
/// (the object-level check still runs).
pub(crate) fn check_crc(server: Option<u64>, local: u64, what: impl FnOnce() -> String) -> Result<()> {
    match server {
        Some(s) if s != local => Err(Error::Integrity(format!(
            "{}: the server stored CRC-64 {s}, the data sent has {local}",
            what()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "ak".into(),
            access_key_secret: "sk".into(),
            session_token: None,
        }
    }

    #[test]
    fn addressing_follows_the_endpoint() {
        assert_eq!(
            Config::new("127.0.0.1:9000", "r", creds()).addressing,
            Addressing::PathStyle
        );
        assert_eq!(
            Config::new("http://localhost:9000", "r", creds()).addressing,
            Addressing::PathStyle
        );
        assert_eq!(
            Config::new("https://oss-cn-hangzhou.aliyuncs.com", "r", creds()).addressing,
            Addressing::VirtualHost
        );
        let c = Client::new(Config::new("127.0.0.1:9000", "r", creds())).unwrap();
        let call = Call::new(Method::PUT, Some("b"), Some("a b/c+d"))
            .query("partNumber", "1")
            .query("uploads", "");
        assert_eq!(c.url(&call), "http://127.0.0.1:9000/b/a%20b/c%2Bd?partNumber=1&uploads");
        let c = Client::new(Config::new("https://oss.example.com", "r", creds())).unwrap();
        assert_eq!(
            c.url(&Call::new(Method::GET, Some("b"), Some("k"))),
            "https://b.oss.example.com/k"
        );
    }
}
