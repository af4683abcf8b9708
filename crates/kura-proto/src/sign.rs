//! OSS request signing, V1 (HMAC-SHA1) and V4 (OSS4-HMAC-SHA256), shared by the server (to
//! verify) and the client (to sign). Inputs are already-decoded request parts; each function
//! builds exactly the string oss-api.md §3 describes.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::encode::{encode_component, encode_path};

/// Query parameters that V1 signs (the union of the oss2, cpp and Go v1 lists); any name
/// starting with `x-oss-` is signed too.
pub const V1_SUB_RESOURCES: &[&str] = &[
    "acl",
    "append",
    "bucketInfo",
    "callback",
    "callback-var",
    "cleanRestoredObject",
    "comp",
    "continuation-token",
    "cors",
    "delete",
    "encryption",
    "endTime",
    "inventory",
    "inventoryId",
    "lifecycle",
    "live",
    "location",
    "logging",
    "objectMeta",
    "partNumber",
    "policy",
    "position",
    "qos",
    "qosInfo",
    "referer",
    "regionList",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "sequential",
    "startTime",
    "stat",
    "status",
    "symlink",
    "tagging",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "vod",
    "website",
    "worm",
    "wormExtend",
    "wormId",
    "cname",
    "img",
    "style",
    "styleName",
    "udf",
    "udfName",
    "udfImage",
    "udfId",
    "udfImageDesc",
    "udfApplication",
    "udfApplicationLog",
    "reservedcapacity",
    "bucketArchiveDirectRead",
    "metaQuery",
    "resourceGroup",
    "rtc",
    "accessPoint",
    "accessPointPolicy",
    "httpsConfig",
    "publicAccessBlock",
    "policyStatus",
    "redundancyTransition",
    "dataRedundancyTransition",
    "transferAcceleration",
    "objectInfo",
];

fn is_v1_sub_resource(name: &str) -> bool {
    name.starts_with("x-oss-") || V1_SUB_RESOURCES.contains(&name)
}

/// `/`, `/bucket/` or `/bucket/key` (key raw), plus sorted sub-resources with raw values.
pub fn v1_canonical_resource(bucket: Option<&str>, key: Option<&str>, query: &[(String, String)]) -> String {
    let mut out = match (bucket, key) {
        (Some(b), Some(k)) => format!("/{b}/{k}"),
        (Some(b), None) => format!("/{b}/"),
        _ => "/".to_string(),
    };
    let mut subs: Vec<&(String, String)> = query.iter().filter(|(n, _)| is_v1_sub_resource(n)).collect();
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    if !subs.is_empty() {
        out.push('?');
        let parts: Vec<String> = subs
            .iter()
            .map(|(n, v)| if v.is_empty() { n.clone() } else { format!("{n}={v}") })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// Looks up a header (names are lowercase in `headers`).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// `x-oss-*` headers, lowercase, values trimmed, repeated values joined with `,`, sorted.
fn oss_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    prefixed_headers(headers, "x-oss-")
}

/// Headers whose lowercase name starts with `prefix`, trimmed, joined, sorted.
fn prefixed_headers(headers: &[(String, String)], prefix: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, v) in headers {
        let n = n.to_ascii_lowercase();
        if !n.starts_with(prefix) {
            continue;
        }
        if let Some(existing) = out.iter_mut().find(|(e, _)| *e == n) {
            existing.1.push(',');
            existing.1.push_str(v.trim());
        } else {
            out.push((n, v.trim().to_string()));
        }
    }
    out.sort();
    out
}

/// V1 StringToSign. `date_line` is x-oss-date, else Date (header auth) or Expires (presigned).
pub fn v1_string_to_sign(
    method: &str,
    headers: &[(String, String)],
    date_line: &str,
    canonical_resource: &str,
) -> String {
    let mut s = String::new();
    s.push_str(method);
    s.push('\n');
    s.push_str(header(headers, "content-md5").unwrap_or(""));
    s.push('\n');
    s.push_str(header(headers, "content-type").unwrap_or(""));
    s.push('\n');
    s.push_str(date_line);
    s.push('\n');
    for (n, v) in oss_headers(headers) {
        s.push_str(&n);
        s.push(':');
        s.push_str(&v);
        s.push('\n');
    }
    s.push_str(canonical_resource);
    s
}

/// AWS Signature Version 2: the V1 string with `x-amz-*` headers in place of `x-oss-*`.
pub fn s3v2_string_to_sign(
    method: &str,
    headers: &[(String, String)],
    date_line: &str,
    canonical_resource: &str,
) -> String {
    let mut s = format!(
        "{method}\n{}\n{}\n{date_line}\n",
        header(headers, "content-md5").unwrap_or(""),
        header(headers, "content-type").unwrap_or("")
    );
    for (n, v) in prefixed_headers(headers, "x-amz-") {
        s.push_str(&format!("{n}:{v}\n"));
    }
    s.push_str(canonical_resource);
    s
}

pub fn v1_signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// V4 canonical URI: `/`, `/bucket/` or `/bucket/key`, RFC 3986-encoded with `/` kept.
pub fn v4_canonical_uri(bucket: Option<&str>, key: Option<&str>) -> String {
    match (bucket, key) {
        (Some(b), Some(k)) => encode_path(&format!("/{b}/{k}")),
        (Some(b), None) => encode_path(&format!("/{b}/")),
        _ => "/".to_string(),
    }
}

/// V4 canonical query: every param (decoded in `query`) re-encoded, sorted by encoded name
/// then value; `x-oss-signature` excluded.
pub fn v4_canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(n, _)| n != "x-oss-signature")
        .map(|(n, v)| (encode_component(n), encode_component(v)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| if v.is_empty() { n.clone() } else { format!("{n}={v}") })
        .collect::<Vec<_>>()
        .join("&")
}

/// Parsed `Authorization: OSS4-HMAC-SHA256 ...` (parts in any order, spaces optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V4Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub product: String,
    pub additional_headers: Vec<String>,
    pub signature: String,
}

/// Parses `AK/DATE/REGION/PRODUCT/aliyun_v4_request`.
pub fn parse_v4_credential(credential: &str) -> Option<(String, String, String, String)> {
    let mut it = credential.rsplitn(5, '/');
    let terminator = it.next()?;
    let product = it.next()?;
    let region = it.next()?;
    let date = it.next()?;
    let ak = it.next()?;
    if terminator != "aliyun_v4_request" || date.len() != 8 || ak.is_empty() {
        return None;
    }
    Some((ak.into(), date.into(), region.into(), product.into()))
}

/// Lowercased, sorted, deduplicated additional-header names.
pub fn parse_additional_headers(list: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .split(';')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn parse_v4_authorization(value: &str) -> Option<V4Authorization> {
    let rest = value.trim().strip_prefix("OSS4-HMAC-SHA256")?.trim_start();
    let mut credential = None;
    let mut additional = Vec::new();
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => credential = Some(v.trim().to_string()),
            "AdditionalHeaders" => additional = parse_additional_headers(v),
            "Signature" => signature = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let (access_key_id, date, region, product) = parse_v4_credential(&credential?)?;
    Some(V4Authorization {
        access_key_id,
        date,
        region,
        product,
        additional_headers: additional,
        signature: signature?,
    })
}

/// V4 canonical request. Signed headers: `x-oss-*`, content-type, content-md5, plus the
/// additional ones; values trimmed as received. `drop_empty` mimics the C++ SDK, which leaves
/// out headers whose value is empty.
pub fn v4_canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &[(String, String)],
    additional_headers: &[String],
    hashed_payload: &str,
    drop_empty: bool,
) -> String {
    let mut signed: Vec<(String, String)> = Vec::new();
    for (n, v) in headers {
        let n = n.to_ascii_lowercase();
        let wanted =
            n.starts_with("x-oss-") || n == "content-type" || n == "content-md5" || additional_headers.contains(&n);
        if !wanted || (drop_empty && v.trim().is_empty()) {
            continue;
        }
        if let Some(existing) = signed.iter_mut().find(|(e, _)| *e == n) {
            existing.1.push(',');
            existing.1.push_str(v.trim());
        } else {
            signed.push((n, v.trim().to_string()));
        }
    }
    signed.sort();
    let mut s = String::new();
    s.push_str(method);
    s.push('\n');
    s.push_str(canonical_uri);
    s.push('\n');
    s.push_str(canonical_query);
    s.push('\n');
    for (n, v) in &signed {
        s.push_str(n);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&additional_headers.join(";"));
    s.push('\n');
    s.push_str(hashed_payload);
    s
}

pub fn v4_scope(date: &str, region: &str, product: &str) -> String {
    format!("{date}/{region}/{product}/aliyun_v4_request")
}

pub fn v4_string_to_sign(timestamp: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("OSS4-HMAC-SHA256\n{timestamp}\n{scope}\n{hash}")
}

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

pub fn v4_signature(secret: &str, date: &str, region: &str, product: &str, string_to_sign: &str) -> String {
    let k = hmac256(format!("aliyun_v4{secret}").as_bytes(), date.as_bytes());
    let k = hmac256(&k, region.as_bytes());
    let k = hmac256(&k, product.as_bytes());
    let k = hmac256(&k, b"aliyun_v4_request");
    hex::encode(hmac256(&k, string_to_sign.as_bytes()))
}

/// Constant-time string comparison for signatures.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn v1_vector() {
        let headers = h(&[
            ("content-md5", "eB5eJF1ptWaXm4bijSPyxw=="),
            ("content-type", "text/html"),
            ("x-oss-date", "Wed, 28 Dec 2022 10:27:41 GMT"),
            ("x-oss-meta-author", "alice"),
            ("x-oss-meta-magic", "abracadabra"),
        ]);
        let res = v1_canonical_resource(Some("examplebucket"), Some("nelson"), &[]);
        let sts = v1_string_to_sign("PUT", &headers, "Wed, 28 Dec 2022 10:27:41 GMT", &res);
        assert_eq!(sts, "PUT\neB5eJF1ptWaXm4bijSPyxw==\ntext/html\nWed, 28 Dec 2022 10:27:41 GMT\nx-oss-date:Wed, 28 Dec 2022 10:27:41 GMT\nx-oss-meta-author:alice\nx-oss-meta-magic:abracadabra\n/examplebucket/nelson");
        assert_eq!(v1_signature("sk", &sts), "kSHKmLxlyEAKtZPkJhG9bZb5k7M=");
        let res = v1_canonical_resource(Some("examplebucket"), Some("nelson"), &h(&[("acl", "")]));
        let sts = v1_string_to_sign("PUT", &headers, "Wed, 28 Dec 2022 10:27:41 GMT", &res);
        assert_eq!(v1_signature("sk", &sts), "/afkugFbmWDQ967j1vr6zygBLQk=");
    }

    #[test]
    fn v1_resource_signs_only_sub_resources() {
        let q = h(&[
            ("uploadId", "X"),
            ("partNumber", "1"),
            ("max-keys", "5"),
            ("prefix", ""),
        ]);
        assert_eq!(
            v1_canonical_resource(Some("b"), Some("k"), &q),
            "/b/k?partNumber=1&uploadId=X"
        );
        assert_eq!(v1_canonical_resource(None, None, &[]), "/");
    }

    fn vector_query() -> Vec<(String, String)> {
        h(&[
            ("param1", "value1"),
            ("+param1", "value3"),
            ("|param1", "value4"),
            ("+param2", ""),
            ("|param2", ""),
            ("param2", ""),
        ])
    }

    #[test]
    fn v4_header_vector() {
        let headers = h(&[
            ("x-oss-head1", "value"),
            ("abc", "value"),
            ("zabc", "value"),
            ("xyz", "value"),
            ("content-type", "text/plain"),
            ("x-oss-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-oss-date", "20231216T162057Z"),
        ]);
        let uri = v4_canonical_uri(Some("bucket"), Some("1234+-/123/1.txt"));
        let cq = v4_canonical_query(&vector_query());
        assert_eq!(
            cq,
            "%2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2"
        );
        let cr = v4_canonical_request("PUT", &uri, &cq, &headers, &[], "UNSIGNED-PAYLOAD", false);
        assert_eq!(cr, "PUT\n/bucket/1234%2B-/123/1.txt\n%2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2\ncontent-type:text/plain\nx-oss-content-sha256:UNSIGNED-PAYLOAD\nx-oss-date:20231216T162057Z\nx-oss-head1:value\n\n\nUNSIGNED-PAYLOAD");
        let scope = v4_scope("20231216", "cn-hangzhou", "oss");
        let sts = v4_string_to_sign("20231216T162057Z", &scope, &cr);
        assert!(sts.ends_with("f4613657f1b108998e8dbd10a1aa5da621dc2c6e02c9ddec0f163664848704c4"));
        assert_eq!(
            v4_signature("sk", "20231216", "cn-hangzhou", "oss", &sts),
            "e21d18daa82167720f9b1047ae7e7f1ce7cb77a31e8203a7d5f4624fa0284afe"
        );
    }

    #[test]
    fn v4_additional_headers_vector() {
        // Signing time 1702747512 = 20231216T172512Z.
        let headers = h(&[
            ("x-oss-head1", "value"),
            ("abc", "value"),
            ("zabc", "value"),
            ("xyz", "value"),
            ("content-type", "text/plain"),
            ("x-oss-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-oss-date", "20231216T172512Z"),
        ]);
        let auth = parse_v4_authorization(
            "OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request, Signature=x, AdditionalHeaders=ZAbc;abc",
        )
        .unwrap();
        assert_eq!(auth.additional_headers, vec!["abc", "zabc"]);
        let uri = v4_canonical_uri(Some("bucket"), Some("1234+-/123/1.txt"));
        let cr = v4_canonical_request(
            "PUT",
            &uri,
            &v4_canonical_query(&vector_query()),
            &headers,
            &auth.additional_headers,
            "UNSIGNED-PAYLOAD",
            false,
        );
        let sts = v4_string_to_sign("20231216T172512Z", &v4_scope("20231216", "cn-hangzhou", "oss"), &cr);
        assert_eq!(
            v4_signature("sk", "20231216", "cn-hangzhou", "oss", &sts),
            "4a4183c187c07c8947db7620deb0a6b38d9fbdd34187b6dbaccb316fa251212f"
        );
    }

    #[test]
    fn v4_presign_vector() {
        let headers = h(&[
            ("x-oss-head1", "value"),
            ("abc", "value"),
            ("zabc", "value"),
            ("xyz", "value"),
            ("content-type", "application/octet-stream"),
        ]);
        let mut q = vector_query();
        q.extend(h(&[
            ("x-oss-signature-version", "OSS4-HMAC-SHA256"),
            ("x-oss-credential", "ak/20231217/cn-hangzhou/oss/aliyun_v4_request"),
            ("x-oss-date", "20231217T025437Z"),
            ("x-oss-expires", "599"),
            ("x-oss-signature", "ignored"),
        ]));
        let cq = v4_canonical_query(&q);
        assert_eq!(cq, "%2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2&x-oss-credential=ak%2F20231217%2Fcn-hangzhou%2Foss%2Faliyun_v4_request&x-oss-date=20231217T025437Z&x-oss-expires=599&x-oss-signature-version=OSS4-HMAC-SHA256");
        let cr = v4_canonical_request(
            "PUT",
            &v4_canonical_uri(Some("bucket"), Some("1234+-/123/1.txt")),
            &cq,
            &headers,
            &[],
            "UNSIGNED-PAYLOAD",
            false,
        );
        let sts = v4_string_to_sign("20231217T025437Z", &v4_scope("20231217", "cn-hangzhou", "oss"), &cr);
        assert_eq!(
            v4_signature("sk", "20231217", "cn-hangzhou", "oss", &sts),
            "a39966c61718be0d5b14e668088b3fa07601033f6518ac7b523100014269c0fe"
        );
    }

    #[test]
    fn v4_authorization_parsing_is_lenient() {
        let a = parse_v4_authorization("OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,AdditionalHeaders=host,Signature=abc").unwrap();
        assert_eq!(a.access_key_id, "ak");
        assert_eq!(a.region, "cn-hangzhou");
        assert_eq!(a.additional_headers, vec!["host"]);
        assert_eq!(a.signature, "abc");
        assert!(
            parse_v4_authorization("OSS4-HMAC-SHA256 Credential=ak/2023/cn/oss/aliyun_v4_request,Signature=a")
                .is_none()
        );
        assert!(parse_v4_authorization("OSS ak:sig").is_none());
    }
}
