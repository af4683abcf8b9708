//! Integration tests: a real `kura serve` over HTTP, driven with reqwest and requests signed by
//! kura-proto's V4 signer (the code the client library will share), plus raw sockets for the
//! wire details SDKs depend on.

use std::io::{Read, Write};
use std::net::TcpStream;

use kura_proto::{crc64, encode, sign, sigv4, timefmt, xml};
use reqwest::Method;

mod common;

use common::{files_under, start, Server, AK, SK};

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// A V4-signed request. `query` is decoded pairs.
    fn v4(
        &self,
        method: Method,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        self.v4h(method, bucket, key, query, &[])
    }

    /// A V4-signed request with extra (signed) headers.
    fn v4h(
        &self,
        method: Method,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        self.v4_signed(method, bucket, key, query, extra, false)
    }

    /// A V4-signed request; with `drop_empty` the signature leaves out empty-valued headers,
    /// as the C++ SDK signs.
    fn v4_signed(
        &self,
        method: Method,
        bucket: Option<&str>,
        key: Option<&str>,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        drop_empty: bool,
    ) -> reqwest::RequestBuilder {
        let stamp = timefmt::iso8601_basic(timefmt::now_millis());
        let date = &stamp[..8];
        let q: Vec<(String, String)> = query.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let mut headers = vec![
            ("x-oss-content-sha256".to_string(), "UNSIGNED-PAYLOAD".to_string()),
            ("x-oss-date".to_string(), stamp.clone()),
        ];
        headers.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        let cr = sign::v4_canonical_request(
            method.as_str(),
            &sign::v4_canonical_uri(bucket, key),
            &sign::v4_canonical_query(&q),
            &headers,
            &[],
            "UNSIGNED-PAYLOAD",
            drop_empty,
        );
        let scope = sign::v4_scope(date, "cn-hangzhou", "oss");
        let sig = sign::v4_signature(
            SK,
            date,
            "cn-hangzhou",
            "oss",
            &sign::v4_string_to_sign(&stamp, &scope, &cr),
        );
        let path = match (bucket, key) {
            (Some(b), Some(k)) => format!("/{b}/{}", encode::encode_component(k)),
            (Some(b), None) => format!("/{b}/"),
            _ => "/".to_string(),
        };
        let qs: Vec<String> = q
            .iter()
            .map(|(a, b)| format!("{}={}", encode::encode_component(a), encode::encode_component(b)))
            .collect();
        let url = if qs.is_empty() {
            self.url(&path)
        } else {
            self.url(&format!("{path}?{}", qs.join("&")))
        };
        let mut rb = reqwest::Client::new().request(method, url);
        for (n, v) in extra {
            rb = rb.header(*n, *v);
        }
        rb.header("x-oss-date", stamp)
            .header("x-oss-content-sha256", "UNSIGNED-PAYLOAD")
            .header(
                "authorization",
                format!("OSS4-HMAC-SHA256 Credential={AK}/{scope},Signature={sig}"),
            )
    }
}

async fn ok(rb: reqwest::RequestBuilder) -> reqwest::Response {
    let r = rb.send().await.unwrap();
    let status = r.status();
    if !status.is_success() {
        panic!("{status}: {}", r.text().await.unwrap());
    }
    r
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn multipart_round_trip_with_v4_and_idempotent_complete() {
    let s = start();
    ok(s.v4(Method::PUT, Some("mpu"), None, &[])).await;
    let key = "dir/with space+plus/obj";
    let init = ok(s.v4(Method::POST, Some("mpu"), Some(key), &[("uploads", "")])).await;
    let init: xml::InitiateMultipartUploadResult = xml::from_xml(&init.text().await.unwrap()).unwrap();
    let part1 = vec![1u8; 200_000];
    let part2 = b"tail".to_vec();
    let mut etags = Vec::new();
    for (n, body) in [(1, part1.clone()), (2, part2.clone())] {
        let r = ok(s
            .v4(
                Method::PUT,
                Some("mpu"),
                Some(key),
                &[("partNumber", &n.to_string()), ("uploadId", &init.upload_id)],
            )
            .body(body.clone()))
        .await;
        assert_eq!(header(&r, "x-oss-hash-crc64ecma"), crc64::checksum(&body).to_string());
        etags.push(header(&r, "etag"));
    }
    // Go v1 sends the quotes as &#34; entities; the parser must unescape them.
    let body = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part><Part><PartNumber>2</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
        etags[0].replace('"', "&#34;"),
        etags[1].replace('"', "&#34;")
    );
    let first = ok(s
        .v4(Method::POST, Some("mpu"), Some(key), &[("uploadId", &init.upload_id)])
        .body(body.clone()))
    .await;
    let whole: Vec<u8> = [part1.clone(), part2.clone()].concat();
    assert_eq!(
        header(&first, "x-oss-hash-crc64ecma"),
        crc64::checksum(&whole).to_string()
    );
    let expected_etag = kura_proto::etag::multipart(etags.iter().map(|e| e.trim_matches('"')));
    assert_eq!(header(&first, "etag"), format!("\"{expected_etag}\""));
    let first_body = first.text().await.unwrap();
    let retry = ok(s
        .v4(Method::POST, Some("mpu"), Some(key), &[("uploadId", &init.upload_id)])
        .body(body))
    .await;
    assert_eq!(retry.text().await.unwrap(), first_body);

    let got = ok(s.v4(Method::GET, Some("mpu"), Some(key), &[])).await;
    assert_eq!(header(&got, "x-oss-object-type"), "Multipart");
    assert_eq!(got.bytes().await.unwrap().as_ref(), whole.as_slice());
    // A ranged GET carries the whole object's CRC (the C++ resumable download needs it).
    let ranged = ok(s
        .v4(Method::GET, Some("mpu"), Some(key), &[])
        .header("range", "bytes=199998-200001"))
    .await;
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        header(&ranged, "content-range"),
        format!("bytes 199998-200001/{}", whole.len())
    );
    assert_eq!(
        header(&ranged, "x-oss-hash-crc64ecma"),
        crc64::checksum(&whole).to_string()
    );
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &whole[199_998..200_002]);
}

#[tokio::test]
async fn range_behavior_standard_and_default() {
    let s = start();
    ok(s.v4(Method::PUT, Some("rng"), None, &[])).await;
    ok(s.v4(Method::PUT, Some("rng"), Some("k"), &[]).body(vec![9u8; 1000])).await;
    let r = s
        .v4(Method::GET, Some("rng"), Some("k"), &[])
        .header("range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "an unsatisfiable range is ignored by default");
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
    let r = s
        .v4h(
            Method::GET,
            Some("rng"),
            Some("k"),
            &[],
            &[("x-oss-range-behavior", "standard")],
        )
        .header("range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert!(r.text().await.unwrap().contains("<Code>InvalidRange</Code>"));
    let r = s
        .v4h(
            Method::GET,
            Some("rng"),
            Some("k"),
            &[],
            &[("x-oss-range-behavior", "standard")],
        )
        .header("range", "bytes=990-2000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().len(), 10);
}

#[tokio::test]
async fn chunked_bodies_and_both_length_headers_are_accepted() {
    let s = start();
    ok(s.v4(Method::PUT, Some("chk"), None, &[])).await;
    // reqwest sends a streamed body with Transfer-Encoding: chunked, as the C++ SDK does.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(b"hello ".to_vec()), Ok(b"chunked".to_vec())];
    let stream = futures_util::stream::iter(chunks);
    let r = ok(s
        .v4(Method::PUT, Some("chk"), Some("a"), &[])
        .body(reqwest::Body::wrap_stream(stream)))
    .await;
    assert_eq!(
        header(&r, "x-oss-hash-crc64ecma"),
        crc64::checksum(b"hello chunked").to_string()
    );

    // Older C++ SDKs sent Content-Length and Transfer-Encoding together; a public-read-write
    // bucket lets the raw request go unsigned.
    ok(s.v4h(
        Method::PUT,
        Some("rwb"),
        None,
        &[],
        &[("x-oss-acl", "public-read-write")],
    ))
    .await;
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    sock.write_all(b"PUT /rwb/both HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nabcde\r\n0\r\n\r\n").unwrap();
    let mut resp = String::new();
    sock.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let got = ok(s.v4(Method::GET, Some("rwb"), Some("both"), &[])).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"abcde");
}

#[tokio::test]
async fn service_root_query_forms_and_encoded_keys() {
    let s = start();
    ok(s.v4(Method::PUT, Some("qsb"), None, &[])).await;
    ok(s.v4(Method::PUT, Some("qsb"), Some("a/b"), &[]).body("x")).await;
    // `%2F` in the path is part of the key.
    let date = timefmt::http_date(timefmt::now_millis());
    let sts = sign::v1_string_to_sign("GET", &[], &date, "/qsb/a/b");
    let r = reqwest::Client::new()
        .get(s.url("/qsb/a%2Fb"))
        .header("date", &date)
        .header("authorization", format!("OSS {AK}:{}", sign::v1_signature(SK, &sts)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // `//` is the service root (the C++ SDK's ListBuckets in path style).
    let sts = sign::v1_string_to_sign("GET", &[], &date, "/");
    let r = reqwest::Client::new()
        .get(s.url("//"))
        .header("date", &date)
        .header("authorization", format!("OSS {AK}:{}", sign::v1_signature(SK, &sts)))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        text.contains("<ListAllMyBucketsResult>") && text.contains("<Name>qsb</Name>"),
        "{text}"
    );
    assert!(!text.contains("xmlns"));
    // `?uploads=` (oss2's form) initiates like `?uploads`.
    let sts = sign::v1_string_to_sign("POST", &[], &date, "/qsb/k?uploads");
    let r = reqwest::Client::new()
        .post(s.url("/qsb/k?uploads="))
        .header("date", &date)
        .header("authorization", format!("OSS {AK}:{}", sign::v1_signature(SK, &sts)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<UploadId>"));
}

#[tokio::test]
async fn head_errors_travel_in_x_oss_err() {
    let s = start();
    ok(s.v4(Method::PUT, Some("hdb"), None, &[])).await;
    let r = s
        .v4(Method::HEAD, Some("hdb"), Some("missing"), &[])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let err = header(&r, "x-oss-err");
    use base64::Engine;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(err).unwrap()).unwrap();
    let body: xml::ErrorBody = xml::from_xml(&decoded).unwrap();
    assert_eq!(body.code, "NoSuchKey");
    assert_eq!(body.request_id, header(&r, "x-oss-request-id"));
    assert_eq!(header(&r, "x-oss-request-id").len(), 24);
}

#[tokio::test]
async fn list_objects_pages_with_delimiter_and_url_encoding() {
    let s = start();
    ok(s.v4(Method::PUT, Some("lsb"), None, &[])).await;
    for k in ["a/1", "a/2", "b", "c/x/y", "c/z", "d\u{c}ctl", "e"] {
        ok(s.v4(Method::PUT, Some("lsb"), Some(k), &[]).body("v")).await;
    }
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let r = ok(s.v4(
            Method::GET,
            Some("lsb"),
            None,
            &[
                ("delimiter", "/"),
                ("max-keys", "2"),
                ("marker", &marker),
                ("encoding-type", "url"),
            ],
        ))
        .await;
        let page: xml::ListBucketResult = xml::from_xml(&r.text().await.unwrap()).unwrap();
        for c in &page.contents {
            seen.push(encode::decode_query(&c.key).unwrap());
        }
        for p in &page.common_prefixes {
            seen.push(encode::decode_query(&p.prefix).unwrap());
        }
        if !page.is_truncated {
            break;
        }
        marker = encode::decode_query(page.next_marker.as_deref().unwrap()).unwrap();
    }
    seen.sort();
    assert_eq!(seen, vec!["a/", "b", "c/", "d\u{c}ctl", "e"]);
}

#[tokio::test]
async fn crash_mid_upload_keeps_every_acknowledged_part_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    // A short deletion grace keeps the heartbeat short (PostgreSQL): the killed server's
    // temporary files go once it has lapsed.
    let mut s = common::start_with(dir.path(), &["--deletion-grace-secs", "1"]);
    ok(s.v4(Method::PUT, Some("crash"), None, &[])).await;
    // An object written before the crash: the start-up sweep must know its blob is in use.
    ok(s.v4(Method::PUT, Some("crash"), Some("survivor"), &[])
        .body(vec![7u8; 300_000]))
    .await;
    let init = ok(s.v4(Method::POST, Some("crash"), Some("k"), &[("uploads", "")])).await;
    let init: xml::InitiateMultipartUploadResult = xml::from_xml(&init.text().await.unwrap()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 1..=24u32 {
        let req = s
            .v4(
                Method::PUT,
                Some("crash"),
                Some("k"),
                &[("partNumber", &n.to_string()), ("uploadId", &init.upload_id)],
            )
            .body(vec![n as u8; 1024 * 1024]);
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Ok(r) = req.send().await {
                if r.status().is_success() {
                    let _ = tx.send((n, header(&r, "etag")));
                }
            }
        });
    }
    drop(tx);
    // Kill -9 once a few parts are acknowledged, with others in flight.
    let mut acked = Vec::new();
    while acked.len() < 4 {
        acked.push(rx.recv().await.expect("parts were acknowledged"));
    }
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    while let Some(a) = rx.recv().await {
        acked.push(a);
    }

    // On PostgreSQL the data directory may be shared, so the sweep spares young blob files
    // unless told that none can be another gateway's.
    let s = common::start_with(
        dir.path(),
        &["--shared-file-grace-secs", "0", "--deletion-grace-secs", "1"],
    );
    let r = ok(s.v4(Method::GET, Some("crash"), Some("k"), &[("uploadId", &init.upload_id)])).await;
    let listed: xml::ListPartsResult = xml::from_xml(&r.text().await.unwrap()).unwrap();
    for (n, etag) in &acked {
        let p = listed
            .parts
            .iter()
            .find(|p| p.part_number == *n)
            .expect("an acknowledged part survives");
        assert_eq!(&p.etag, etag);
    }
    // Every listed part is whole, and the start-up sweep (in the background, after
    // listening) leaves exactly their files and the earlier object's.
    let swept = || {
        files_under(&dir.path().join("tmp")).is_empty()
            && files_under(&dir.path().join("blobs")).len() == listed.parts.len() + 1
    };
    // (On PostgreSQL the dead server's leader term and heartbeat lapse first: up to 15 s.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    while !swept() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(files_under(&dir.path().join("tmp")).is_empty());
    assert_eq!(files_under(&dir.path().join("blobs")).len(), listed.parts.len() + 1);
    let survivor = ok(s.v4(Method::GET, Some("crash"), Some("survivor"), &[])).await;
    assert_eq!(survivor.bytes().await.unwrap().as_ref(), vec![7u8; 300_000].as_slice());
    let body: String = listed
        .parts
        .iter()
        .map(|p| {
            format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                p.part_number, p.etag
            )
        })
        .collect();
    ok(
        s.v4(Method::POST, Some("crash"), Some("k"), &[("uploadId", &init.upload_id)])
            .body(format!("<CompleteMultipartUpload>{body}</CompleteMultipartUpload>")),
    )
    .await;
    let got = ok(s.v4(Method::GET, Some("crash"), Some("k"), &[]))
        .await
        .bytes()
        .await
        .unwrap();
    let expected: Vec<u8> = listed
        .parts
        .iter()
        .flat_map(|p| vec![p.part_number as u8; 1024 * 1024])
        .collect();
    assert!(
        got.as_ref() == expected.as_slice(),
        "object bytes differ from the listed parts"
    );
}

/// An S3 request signed with SigV4 by hand, for the body forms boto3 does not send over HTTP.
fn amz_now() -> String {
    timefmt::iso8601_basic(timefmt::now_millis())
}

fn s3_put(
    s: &Server,
    stamp: &str,
    path: &str,
    extra: &[(&str, &str)],
    content_sha: &str,
    body: Vec<u8>,
) -> (reqwest::RequestBuilder, [u8; 32], String, String, String) {
    use kura_proto::sigv4;
    let stamp = stamp.to_string();
    let date = stamp[..8].to_string();
    let host = format!("127.0.0.1:{}", s.port);
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host),
        ("x-amz-content-sha256".into(), content_sha.into()),
        ("x-amz-date".into(), stamp.clone()),
    ];
    headers.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    let mut signed: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
    signed.sort();
    let cr = sigv4::canonical_request("PUT", &sigv4::canonical_uri(path), "", &headers, &signed, content_sha).unwrap();
    let scope = sigv4::scope(&date, "us-east-1", "s3");
    let key = sigv4::signing_key(SK, &date, "us-east-1", "s3");
    let sig = sigv4::sign(&key, &sigv4::string_to_sign(&stamp, &scope, &cr));
    let mut rb = reqwest::Client::new().put(s.url(path));
    for (n, v) in &headers {
        if n != "host" {
            rb = rb.header(n.as_str(), v.as_str());
        }
    }
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders={}, Signature={sig}",
        signed.join(";")
    );
    (rb.header("authorization", auth).body(body), key, stamp, scope, sig)
}

#[tokio::test]
async fn s3_signed_streaming_upload_and_payload_hash() {
    use kura_proto::{checksum, sigv4};
    let s = start();
    ok(s.v4(Method::PUT, Some("stream"), None, &[])).await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let crc = checksum::to_base64(&checksum::digest(checksum::Algorithm::Crc32c, &data));

    // STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: 64 KiB signed chunks, a signed checksum trailer.
    let build = |key: &[u8; 32], stamp: &str, scope: &str, seed: &str, tamper: bool| -> Vec<u8> {
        let mut body = Vec::new();
        let mut prev = seed.to_string();
        for chunk in data.chunks(65536).chain(std::iter::once(&[][..])) {
            let sig = sigv4::chunk_signature(key, stamp, scope, &prev, &sigv4::sha256_hex(chunk));
            body.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", chunk.len()).as_bytes());
            let mut c = chunk.to_vec();
            if tamper && c.len() > 10 {
                c[5] ^= 1;
            }
            body.extend_from_slice(&c);
            if !chunk.is_empty() {
                body.extend_from_slice(b"\r\n");
            }
            prev = sig;
        }
        let trailer = format!("x-amz-checksum-crc32c:{crc}\n");
        let tsig = sigv4::trailer_signature(key, stamp, scope, &prev, &trailer);
        body.extend_from_slice(
            format!("x-amz-checksum-crc32c:{crc}\r\nx-amz-trailer-signature:{tsig}\r\n\r\n").as_bytes(),
        );
        body
    };
    let extra = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "200000"),
        ("x-amz-trailer", "x-amz-checksum-crc32c"),
    ];
    let mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
    // The seed signature does not depend on the body: compute it, then build the body.
    let now = amz_now();
    let (_, key, stamp, scope, seed) = s3_put(&s, &now, "/stream/signed", &extra, mode, vec![]);
    let (rb, ..) = s3_put(
        &s,
        &now,
        "/stream/signed",
        &extra,
        mode,
        build(&key, &stamp, &scope, &seed, false),
    );
    let r = ok(rb).await;
    assert_eq!(header(&r, "x-amz-checksum-crc32c"), crc);
    let got = ok(s.v4(Method::GET, Some("stream"), Some("signed"), &[])).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());

    // One flipped byte breaks the chunk chain: 403, nothing stored.
    let now = amz_now();
    let (_, key, stamp, scope, seed) = s3_put(&s, &now, "/stream/forged", &extra, mode, vec![]);
    let (rb, ..) = s3_put(
        &s,
        &now,
        "/stream/forged",
        &extra,
        mode,
        build(&key, &stamp, &scope, &seed, true),
    );
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("SignatureDoesNotMatch"));
    assert_eq!(
        s.v4(Method::HEAD, Some("stream"), Some("forged"), &[])
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // A real payload hash must match the body.
    let wrong = sigv4::sha256_hex(b"something else");
    let (rb, ..) = s3_put(&s, &amz_now(), "/stream/hashed", &[], &wrong, b"the body".to_vec());
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("XAmzContentSHA256Mismatch"));
    let right = sigv4::sha256_hex(b"the body");
    let (rb, ..) = s3_put(&s, &amz_now(), "/stream/hashed", &[], &right, b"the body".to_vec());
    ok(rb).await;
}

#[tokio::test]
async fn virtual_host_addressing_with_domain() {
    use kura_proto::sigv4;
    let dir = tempfile::tempdir().unwrap();
    let s = common::start_with(dir.path(), &["--domain", "example.local"]);
    ok(s.v4(Method::PUT, Some("vhost"), None, &[])).await;
    // S3 with the bucket in the Host: PUT http://vhost.example.local/dir/key.
    let stamp = timefmt::iso8601_basic(timefmt::now_millis());
    let host = format!("vhost.example.local:{}", s.port);
    let body = b"addressed by host".to_vec();
    let sha = sigv4::sha256_hex(&body);
    let headers = vec![
        ("host".to_string(), host.clone()),
        ("x-amz-content-sha256".to_string(), sha.clone()),
        ("x-amz-date".to_string(), stamp.clone()),
    ];
    let signed: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
    let cr = sigv4::canonical_request("PUT", &sigv4::canonical_uri("/dir/key"), "", &headers, &signed, &sha).unwrap();
    let scope = sigv4::scope(&stamp[..8], "us-east-1", "s3");
    let key = sigv4::signing_key(SK, &stamp[..8], "us-east-1", "s3");
    let sig = sigv4::sign(&key, &sigv4::string_to_sign(&stamp, &scope, &cr));
    let r = reqwest::Client::new()
        .put(s.url("/dir/key"))
        .header("host", host)
        .header("x-amz-content-sha256", sha)
        .header("x-amz-date", stamp)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={AK}/{scope},SignedHeaders={},Signature={sig}",
                signed.join(";")
            ),
        )
        .body(body.clone());
    ok(r).await;
    // The same object, path-style.
    let got = ok(s.v4(Method::GET, Some("vhost"), Some("dir/key"), &[])).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), body.as_slice());
}

/// Past `--max-connections`, a new connection gets a clean 503 with Retry-After, and once a
/// connection closes the next one is served.
#[tokio::test]
async fn connection_limit_refuses_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::start_with(dir.path(), &["--max-connections", "2"]);
    let a = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let b = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = reqwest::get(s.url("/")).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), "1");
    assert!(r.text().await.unwrap().contains("<Code>ServiceUnavailable</Code>"));
    drop(a);
    drop(b);
    let mut served = false;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if s.v4(Method::GET, None, None, &[]).send().await.unwrap().status() == 200 {
            served = true;
            break;
        }
    }
    assert!(served, "closed connections did not free their slots");
}

/// A client that stops reading a download loses its connection after `--write-timeout-secs`
/// instead of holding it (and the object's blobs) forever.
#[tokio::test]
async fn a_reader_that_stops_reading_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::start_with(dir.path(), &["--write-timeout-secs", "1"]);
    ok(s.v4(Method::PUT, Some("slow"), None, &[])).await;
    let size = 48 * 1024 * 1024;
    ok(s.v4(Method::PUT, Some("slow"), Some("big"), &[]).body(vec![7u8; size])).await;
    // A public bucket, so the bare GET below needs no signature.
    ok(s.v4h(
        Method::PUT,
        Some("slow"),
        None,
        &[("acl", "")],
        &[("x-oss-acl", "public-read")],
    ))
    .await;
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(sock, "GET /slow/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    // Read nothing for a while: the socket buffers fill, the server's write stalls.
    std::thread::sleep(std::time::Duration::from_secs(4));
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got > 0, "the response never started");
    assert!(
        got < size,
        "the whole object arrived: the stalled write was never cut off"
    );
    // The server still serves others.
    ok(s.v4(Method::GET, None, None, &[])).await;
}

/// A small file system of its own (tmpfs, mounted by the test; CI runs as root). Unmounted on
/// drop.
struct SmallVolume(tempfile::TempDir);

impl SmallVolume {
    fn mount(size_mib: u64) -> Option<SmallVolume> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallVolume(dir))
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

/// A full volume: writes that would eat into the reserve get 507 InsufficientStorage and store
/// nothing, metadata commits and deletes keep working, and writes work again once space is
/// freed, without a restart.
#[tokio::test]
async fn disk_full_refuses_cleanly_and_recovers() {
    let Some(vol) = SmallVolume::mount(64) else {
        assert!(
            unsafe { libc::geteuid() } != 0,
            "running as root, yet a tmpfs could not be mounted"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let data = vol.0.path().join("data");
    let s = common::start_with(
        &data,
        &[
            "--min-free-bytes",
            &(12 * 1024 * 1024).to_string(),
            "--deletion-grace-secs",
            "0",
        ],
    );
    ok(s.v4(Method::PUT, Some("full"), None, &[])).await;
    let mib = |n: usize| vec![9u8; n * 1024 * 1024];
    ok(s.v4(Method::PUT, Some("full"), Some("a"), &[]).body(mib(30))).await;
    // Declared too big for what is left above the reserve: refused before a byte is written.
    let r = s
        .v4(Method::PUT, Some("full"), Some("b"), &[])
        .body(mib(30))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    assert!(r.text().await.unwrap().contains("<Code>InsufficientStorage</Code>"));
    // Undeclared length (chunked): refused once the writes reach the reserve; nothing is kept.
    let stream = futures_util::stream::iter((0..30).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(mib(1)))));
    let r = s
        .v4(Method::PUT, Some("full"), Some("c"), &[])
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507);
    let gone = s.v4(Method::HEAD, Some("full"), Some("c"), &[]).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    // The refused writer removes its temporary file as it winds down.
    for _ in 0..40 {
        if files_under(&data.join("tmp")).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        files_under(&data.join("tmp")).is_empty(),
        "a refused body left a temporary file"
    );
    // Metadata commits still work inside the reserve: a multipart upload starts, a delete runs.
    ok(s.v4(Method::POST, Some("full"), Some("m"), &[("uploads", "")])).await;
    ok(s.v4(Method::DELETE, Some("full"), Some("a"), &[])).await;
    // Once the deletion sweeper has freed the bytes, writes work again without a restart.
    let mut stored = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let r = s
            .v4(Method::PUT, Some("full"), Some("b"), &[])
            .body(mib(30))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            stored = true;
            break;
        }
        assert_eq!(r.status(), 507);
    }
    assert!(stored, "writes did not resume after space was freed");
    let got = ok(s.v4(Method::GET, Some("full"), Some("b"), &[]))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), 30 * 1024 * 1024);
    drop(s);
}

/// The C++ SDK signs V4 without empty-valued headers. Such a signature does not cover them, so
/// they must not act: an empty `x-oss-object-acl` (which would be refused as a bad ACL if it
/// were read) is dropped, and the same header signed normally is read and refused.
#[tokio::test]
async fn unsigned_empty_oss_headers_do_not_act() {
    let s = start();
    ok(s.v4(Method::PUT, Some("empties"), None, &[])).await;
    let empty = [("x-oss-object-acl", "")];
    ok(s.v4_signed(Method::PUT, Some("empties"), Some("k"), &[], &empty, true)
        .body("x"))
    .await;
    let signed = s
        .v4_signed(Method::PUT, Some("empties"), Some("k2"), &[], &empty, false)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 400, "a signed empty ACL header is read (and refused)");
}

/// A SigV4 signature must cover Host: with virtual-host addressing the bucket lives there, so
/// a signature without it would be good for every bucket.
#[tokio::test]
async fn sigv4_without_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::start_with(dir.path(), &["--domain", "example.local"]);
    ok(s.v4(Method::PUT, Some("hosted"), None, &[])).await;
    ok(s.v4(Method::PUT, Some("hosted"), Some("secret"), &[]).body("keep me")).await;
    let stamp = amz_now();
    let date = &stamp[..8];
    let sha = sigv4::sha256_hex(b"");
    let headers = vec![
        ("x-amz-content-sha256".to_string(), sha.clone()),
        ("x-amz-date".to_string(), stamp.clone()),
    ];
    let signed = vec!["x-amz-content-sha256".to_string(), "x-amz-date".to_string()];
    let cr = sigv4::canonical_request("DELETE", "/secret", "", &headers, &signed, &sha).unwrap();
    let scope = sigv4::scope(date, "us-east-1", "s3");
    let key = sigv4::signing_key(SK, date, "us-east-1", "s3");
    let sig = sigv4::sign(&key, &sigv4::string_to_sign(&stamp, &scope, &cr));
    let r = reqwest::Client::new()
        .delete(s.url("/secret"))
        .header("host", "hosted.example.local")
        .header("x-amz-content-sha256", sha)
        .header("x-amz-date", stamp)
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders=x-amz-content-sha256;x-amz-date, Signature={sig}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let kept = ok(s.v4(Method::GET, Some("hosted"), Some("secret"), &[])).await;
    assert_eq!(kept.bytes().await.unwrap().as_ref(), b"keep me");
}

/// The bytes of writer `t`'s `i`-th object: mostly small (kept inline on the embedded
/// store), every eighth one a file; the first bytes name the writer and the write.
fn small_write_body(t: usize, i: usize) -> Vec<u8> {
    let len = if i % 8 == 7 {
        100_000
    } else {
        1000 + (t * 131 + i * 17) % 7000
    };
    let mut body: Vec<u8> = (0..len).map(|j| (t * 7 + i * 13 + j) as u8).collect();
    body[..4].copy_from_slice(&(t as u32).to_be_bytes());
    body[4..8].copy_from_slice(&(i as u32).to_be_bytes());
    body
}

/// kill -9 while 64 clients write small objects (group commit on the embedded store): after
/// the restart every acknowledged object reads back intact, an object whose write was not
/// acknowledged is either whole or absent, every listed object can be read (none points at
/// a missing blob), and once swept no file is left that no object uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_small_writes_keeps_every_acknowledged_object() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(common::start_with(dir.path(), &["--deletion-grace-secs", "1"]));
    ok(s.v4(Method::PUT, Some("small"), None, &[])).await;
    // key -> (bodies tried, in order, and how many of them were acknowledged: a prefix)
    type Log = Arc<Mutex<HashMap<String, (Vec<usize>, usize)>>>;
    let log: Log = Arc::default();
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for t in 0..64usize {
        let (log, acked, signer) = (log.clone(), acked.clone(), s.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                // Every fourth write replaces the writer's "hot" key; the rest are new keys.
                let key = if i % 4 == 3 {
                    format!("w{t}/hot")
                } else {
                    format!("w{t}/{i}")
                };
                log.lock().unwrap().entry(key.clone()).or_default().0.push(i);
                let req = signer
                    .v4(Method::PUT, Some("small"), Some(&key), &[])
                    .body(small_write_body(t, i));
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let mut log = log.lock().unwrap();
                        let entry = log.get_mut(&key).unwrap();
                        entry.1 = entry.0.len();
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(r) => return Some(format!("{key}: {}: {}", r.status(), r.text().await.unwrap_or_default())),
                    Err(_) => return None, // the server is gone
                }
            }
            None
        }));
    }
    while acked.load(std::sync::atomic::Ordering::Relaxed) < 1500 {
        assert!(
            writers.iter().all(|w| !w.is_finished()),
            "a writer stopped before the crash"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-9", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for w in writers {
        if let Some(refused) = w.await.unwrap() {
            panic!("a write was refused: {refused}");
        }
    }
    drop(s); // the last handle: reaps the killed process

    let s = common::start_with(
        dir.path(),
        &["--shared-file-grace-secs", "0", "--deletion-grace-secs", "1"],
    );
    let log = log.lock().unwrap().clone();
    let (mut checked, mut unacked_present) = (0, 0);
    for (key, (tried, acked)) in &log {
        let t: usize = key[1..key.find('/').unwrap()].parse().unwrap();
        let r = s.v4(Method::GET, Some("small"), Some(key), &[]).send().await.unwrap();
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            assert_eq!(*acked, 0, "{key}: an acknowledged write is gone");
            continue;
        }
        assert!(r.status().is_success(), "{key}: {}", r.status());
        let got = r.bytes().await.unwrap();
        let i = u32::from_be_bytes(got[4..8].try_into().unwrap()) as usize;
        // Whole, and a version no older than the last acknowledged one.
        let pos = tried.iter().position(|x| *x == i).expect("a version that was written");
        assert_eq!(
            got.as_ref(),
            small_write_body(t, i).as_slice(),
            "{key}: torn or mixed bytes"
        );
        assert!(pos + 1 >= *acked, "{key}: an older version than the acknowledged one");
        unacked_present += usize::from(pos + 1 > *acked);
        checked += 1;
    }
    // Every object listed can be read whole (its blob exists).
    let (mut listed, mut files_needed, mut marker) = (0usize, 0usize, String::new());
    let mut listed_bytes = 0u64;
    loop {
        let r = ok(s.v4(
            Method::GET,
            Some("small"),
            None,
            &[("marker", &marker), ("max-keys", "1000")],
        ))
        .await;
        let page: xml::ListBucketResult = xml::from_xml(&r.text().await.unwrap()).unwrap();
        for o in &page.contents {
            let got = ok(s.v4(Method::GET, Some("small"), Some(&o.key), &[]))
                .await
                .bytes()
                .await
                .unwrap();
            assert_eq!(got.len() as u64, o.size, "{}", o.key);
            listed += 1;
            listed_bytes += o.size;
            let on_pg = common::pg_database_for(dir.path()).is_some();
            files_needed += usize::from(on_pg || o.size > kura_core::service::DEFAULT_INLINE_MAX as u64);
        }
        if !page.is_truncated {
            break;
        }
        marker = page.contents.last().unwrap().key.clone();
    }
    assert_eq!(listed, checked, "listing and reads disagree");
    // The bucket statistics, kept by each write's own transaction, agree with the listing
    // after the crash.
    let stat = ok(s.v4(Method::GET, Some("small"), None, &[("stat", "")])).await;
    let stat: xml::BucketStat = xml::from_xml(&stat.text().await.unwrap()).unwrap();
    assert_eq!(stat.object_count as usize, listed, "ObjectCount");
    assert_eq!(stat.storage as u64, listed_bytes, "Storage");
    // The sweeps leave exactly the files that objects use (no temp file, no orphan, replaced
    // blobs gone after their grace).
    let swept = || {
        files_under(&dir.path().join("tmp")).is_empty() && files_under(&dir.path().join("blobs")).len() == files_needed
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    while !swept() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(files_under(&dir.path().join("tmp")).is_empty(), "temporary files left");
    assert_eq!(files_under(&dir.path().join("blobs")).len(), files_needed, "blob files");
    // On the embedded store: every inline extent has its bytes, and every inline row belongs
    // to an object or waits in the deletion queue (none leaked).
    if common::pg_database_for(dir.path()).is_none() {
        drop(s);
        let store = kura_core::redb_store::RedbStore::open(&dir.path().join("meta.redb")).unwrap();
        let (mut inline_rows, mut referenced, mut queued) = (Vec::new(), Vec::new(), Vec::new());
        store
            .export(&mut |row| {
                match row {
                    kura_core::copy::Row::Inline(id, _) => inline_rows.push(id),
                    kura_core::copy::Row::Object(_, _, rec) => {
                        referenced.extend(rec.extents.into_iter().filter(|e| e.inline).map(|e| e.blob))
                    }
                    kura_core::copy::Row::Deletion(id, _) => queued.push(id),
                    _ => {}
                }
                Ok(())
            })
            .unwrap();
        for id in &referenced {
            assert!(inline_rows.contains(id), "an object's inline bytes are missing");
        }
        for id in &inline_rows {
            assert!(referenced.contains(id) || queued.contains(id), "an inline row leaked");
        }
        assert!(!referenced.is_empty(), "no object was kept inline");
    }
    eprintln!("{checked} objects checked, {unacked_present} written but not acknowledged");
}
