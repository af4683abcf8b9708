//! AWS Signature Version 4 as S3 uses it: canonical request, string to sign, signing key,
//! Authorization parsing, and the chunk and trailer signatures of aws-chunked bodies.
//! Tested with AWS's published S3 examples.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::encode::{encode_component, encode_path};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// `AK/DATE/REGION/SERVICE/aws4_request`.
pub fn parse_credential(credential: &str) -> Option<(String, String, String, String)> {
    let mut it = credential.rsplitn(5, '/');
    let terminator = it.next()?;
    let service = it.next()?;
    let region = it.next()?;
    let date = it.next()?;
    let ak = it.next()?;
    if terminator != "aws4_request" || date.len() != 8 || ak.is_empty() {
        return None;
    }
    Some((ak.into(), date.into(), region.into(), service.into()))
}

pub fn parse_authorization(value: &str) -> Option<Authorization> {
    let rest = value.trim().strip_prefix(ALGORITHM)?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let (access_key_id, date, region, service) = parse_credential(credential?)?;
    Some(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed?
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        signature: signature?.to_string(),
    })
}

/// The canonical URI: the decoded path re-encoded (RFC 3986, `/` kept), as S3 signs it
/// (encoded once, not normalized).
pub fn canonical_uri(decoded_path: &str) -> String {
    if decoded_path.is_empty() {
        "/".into()
    } else {
        encode_path(decoded_path)
    }
}

/// Canonical query: every param encoded, sorted, `name=value` (always with `=`);
/// `X-Amz-Signature` left out.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(n, _)| n != "X-Amz-Signature")
        .map(|(n, v)| (encode_component(n), encode_component(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Header values trimmed with inner runs of spaces folded, as SigV4 wants.
fn fold_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request over the `signed` headers (lowercase names). Repeated headers are
/// joined with `,`. None if a signed header is missing.
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &[(String, String)],
    signed: &[String],
    payload_hash: &str,
) -> Option<String> {
    let mut s = format!("{method}\n{canonical_uri}\n{canonical_query}\n");
    for name in signed {
        let values: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| fold_spaces(v))
            .collect();
        if values.is_empty() {
            return None;
        }
        s.push_str(name);
        s.push(':');
        s.push_str(&values.join(","));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&signed.join(";"));
    s.push('\n');
    s.push_str(payload_hash);
    Some(s)
}

pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn string_to_sign(timestamp: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The derived key for a day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac256(&k, region.as_bytes());
    let k = hmac256(&k, service.as_bytes());
    hmac256(&k, b"aws4_request")
}

pub fn sign(key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac256(key, string_to_sign.as_bytes()))
}

/// The signature of one aws-chunked chunk, chained from the previous one.
pub fn chunk_signature(key: &[u8; 32], timestamp: &str, scope: &str, previous: &str, chunk_sha256_hex: &str) -> String {
    let sts = format!("AWS4-HMAC-SHA256-PAYLOAD\n{timestamp}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{chunk_sha256_hex}");
    sign(key, &sts)
}

/// The signature of the trailing headers, chained from the last chunk's.
pub fn trailer_signature(key: &[u8; 32], timestamp: &str, scope: &str, previous: &str, trailer_text: &str) -> String {
    let sts = format!(
        "AWS4-HMAC-SHA256-TRAILER\n{timestamp}\n{scope}\n{previous}\n{}",
        sha256_hex(trailer_text.as_bytes())
    );
    sign(key, &sts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn s3_get_object_example() {
        // AWS S3 docs, "Example: GET Object".
        let headers = h(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        let signed: Vec<String> = ["host", "range", "x-amz-content-sha256", "x-amz-date"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cr = canonical_request("GET", &canonical_uri("/test.txt"), "", &headers, &signed, EMPTY_SHA256).unwrap();
        let sts = string_to_sign("20130524T000000Z", &scope("20130524", "us-east-1", "s3"), &cr);
        assert!(sts.ends_with("7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"));
        let key = signing_key(SECRET, "20130524", "us-east-1", "s3");
        assert_eq!(
            sign(&key, &sts),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn s3_list_objects_example_query() {
        // AWS S3 docs, "Example: GET Bucket (List Objects)": max-keys=2&prefix=J.
        let q = h(&[("max-keys", "2"), ("prefix", "J")]);
        assert_eq!(canonical_query(&q), "max-keys=2&prefix=J");
        let headers = h(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        let signed: Vec<String> = ["host", "x-amz-content-sha256", "x-amz-date"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cr = canonical_request("GET", "/", &canonical_query(&q), &headers, &signed, EMPTY_SHA256).unwrap();
        let sts = string_to_sign("20130524T000000Z", &scope("20130524", "us-east-1", "s3"), &cr);
        let key = signing_key(SECRET, "20130524", "us-east-1", "s3");
        assert_eq!(
            sign(&key, &sts),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn streaming_put_example() {
        // AWS S3 docs, "Signature Calculations for the Authorization Header: Transferring
        // Payload in Multiple Chunks": 66,560 bytes of 'a' as 65,536 + 1,024 + 0.
        let headers = h(&[
            ("content-encoding", "aws-chunked"),
            ("content-length", "66824"),
            ("host", "s3.amazonaws.com"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-decoded-content-length", "66560"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ]);
        let auth = parse_authorization("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9").unwrap();
        let cr = canonical_request(
            "PUT",
            &canonical_uri("/examplebucket/chunkObject.txt"),
            "",
            &headers,
            &auth.signed_headers,
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        )
        .unwrap();
        let sc = scope("20130524", "us-east-1", "s3");
        let key = signing_key(SECRET, "20130524", "us-east-1", "s3");
        let seed = sign(&key, &string_to_sign("20130524T000000Z", &sc, &cr));
        assert_eq!(seed, auth.signature);
        let c1 = chunk_signature(&key, "20130524T000000Z", &sc, &seed, &sha256_hex(&[b'a'; 65536]));
        assert_eq!(c1, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648");
        let c2 = chunk_signature(&key, "20130524T000000Z", &sc, &c1, &sha256_hex(&[b'a'; 1024]));
        assert_eq!(c2, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
        let c3 = chunk_signature(&key, "20130524T000000Z", &sc, &c2, EMPTY_SHA256);
        assert_eq!(c3, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
    }

    #[test]
    fn authorization_parsing() {
        let a = parse_authorization("AWS4-HMAC-SHA256 Credential=ak/20261203/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc").unwrap();
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(a.region, "us-east-1");
        assert!(parse_authorization(
            "AWS4-HMAC-SHA256 Credential=ak/2026/us/s3/aws4_request, SignedHeaders=host, Signature=a"
        )
        .is_none());
        assert!(parse_authorization("OSS4-HMAC-SHA256 Credential=x").is_none());
    }
}
