//! Authentication: OSS V1 and V4, in the Authorization header or as presigned URLs. Returns
//! who is asking; authorization (ACLs) happens after routing.

use kura_core::{Code, Error, Result};
use kura_proto::{sign, timefmt};

use crate::request::Ctx;

/// Allowed difference between a request's time and ours (OSS: 15 minutes).
pub const MAX_SKEW_SECS: u64 = 15 * 60;
/// Longest V4 presign validity (7 days).
pub const MAX_PRESIGN_SECS: u64 = 604_800;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Root,
    Anonymous,
}

/// How the request body is covered by the signature.
#[derive(Debug, Clone)]
pub enum Payload {
    /// `UNSIGNED-PAYLOAD`, a presigned URL, or an anonymous request.
    Unsigned,
    /// A SHA-256 the body must match (S3 `x-amz-content-sha256`, OSS `x-oss-content-sha256`).
    Sha256(Vec<u8>),
    /// S3 aws-chunked framing; with `signing` each chunk carries a chained signature.
    Chunked {
        signing: Option<ChunkSigning>,
        trailer: bool,
    },
}

#[derive(Debug, Clone)]
pub struct ChunkSigning {
    pub key: [u8; 32],
    pub timestamp: String,
    pub scope: String,
    pub seed: String,
}

/// Who is asking and what their signature covers.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    pub payload: Payload,
    /// The signature verified only with empty-valued `x-oss-*` headers left out (as the C++
    /// SDK signs): those headers are then not covered and must not act, so the pipeline
    /// removes them before routing.
    pub empty_headers_unsigned: bool,
}

impl Authenticated {
    pub fn anonymous(payload: Payload) -> Self {
        Authenticated {
            principal: Principal::Anonymous,
            payload,
            empty_headers_unsigned: false,
        }
    }
    pub fn root(payload: Payload) -> Self {
        Authenticated {
            principal: Principal::Root,
            payload,
            empty_headers_unsigned: false,
        }
    }
}

/// Checks a body read whole (XML) against the signed payload hash, if there is one.
pub fn check_payload(payload: &Payload, body: &[u8]) -> Result<()> {
    use sha2::{Digest, Sha256};
    if let Payload::Sha256(expected) = payload {
        if Sha256::digest(body).as_slice() != expected.as_slice() {
            return Err(Error::new(Code::XAmzContentSHA256Mismatch));
        }
    }
    Ok(())
}

/// `x-oss-content-sha256`: `UNSIGNED-PAYLOAD` (what the SDKs send) or the body's SHA-256 in
/// hex, which the signature then covers and the body must match.
fn oss_payload(ctx: &Ctx) -> Result<Payload> {
    match ctx.header("x-oss-content-sha256").map(str::trim) {
        None | Some("UNSIGNED-PAYLOAD") => Ok(Payload::Unsigned),
        Some(h) if h.len() == 64 => hex::decode(h)
            .map(Payload::Sha256)
            .map_err(|_| Error::invalid_argument("x-oss-content-sha256 is not valid.", "x-oss-content-sha256", h)),
        Some(h) => Err(Error::invalid_argument(
            "x-oss-content-sha256 must be UNSIGNED-PAYLOAD or a SHA-256 in hex.",
            "x-oss-content-sha256",
            h,
        )),
    }
}

#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
}

fn now_secs() -> u64 {
    timefmt::now_millis() / 1000
}

fn skewed() -> Error {
    Error::new(Code::RequestTimeTooSkewed).with(|d| d.server_time = Some(timefmt::iso8601(timefmt::now_millis())))
}

fn check_skew(t: u64) -> Result<()> {
    if now_secs().abs_diff(t) > MAX_SKEW_SECS {
        Err(skewed())
    } else {
        Ok(())
    }
}

fn mismatch(string_to_sign: String, ak: &str) -> Error {
    Error::new(Code::SignatureDoesNotMatch).with(|d| {
        d.string_to_sign = Some(string_to_sign);
        d.access_key_id = Some(ak.to_string());
    })
}

fn access_denied(msg: &str) -> Error {
    Error::msg(Code::AccessDenied, msg)
}

fn secret_for<'a>(creds: &'a Credentials, ak: &str) -> Result<&'a str> {
    if ak == creds.access_key_id {
        Ok(&creds.access_key_secret)
    } else {
        Err(Error::new(Code::InvalidAccessKeyId).with(|d| d.access_key_id = Some(ak.to_string())))
    }
}

pub fn authenticate(ctx: &Ctx, creds: &Credentials) -> Result<Authenticated> {
    let payload = oss_payload(ctx)?;
    let root = |p: Payload| Authenticated::root(p);
    if let Some(auth) = ctx.header("authorization") {
        if let Some(rest) = auth.strip_prefix("OSS ") {
            return v1_header(ctx, creds, rest).map(|_| root(payload));
        }
        if auth.starts_with("OSS4-HMAC-SHA256 ") {
            return v4_header(ctx, creds, auth).map(|dropped| Authenticated {
                empty_headers_unsigned: dropped,
                ..root(payload)
            });
        }
        return Err(access_denied(
            "The authorization scheme is not supported; use OSS or OSS4-HMAC-SHA256.",
        ));
    }
    if ctx.query_raw("x-oss-signature-version").is_some() || ctx.query_raw("x-oss-signature").is_some() {
        return v4_presigned(ctx, creds).map(|dropped| Authenticated {
            empty_headers_unsigned: dropped,
            ..root(Payload::Unsigned)
        });
    }
    if ctx.query_raw("OSSAccessKeyId").is_some() || ctx.query_raw("Signature").is_some() {
        return v1_presigned(ctx, creds).map(|_| root(Payload::Unsigned));
    }
    Ok(Authenticated::anonymous(payload))
}

fn v1_header(ctx: &Ctx, creds: &Credentials, rest: &str) -> Result<Principal> {
    let (ak, sig) = rest
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| access_denied("The Authorization header is malformed."))?;
    let secret = secret_for(creds, ak)?;
    let date_line = ctx.header("x-oss-date").or_else(|| ctx.header("date")).unwrap_or("");
    let t = timefmt::parse_http_date(date_line)
        .ok_or_else(|| access_denied("The request has no valid Date or x-oss-date header."))?;
    check_skew(t)?;
    let resource = sign::v1_canonical_resource(ctx.bucket.as_deref(), ctx.key.as_deref(), &ctx.query);
    let sts = sign::v1_string_to_sign(&ctx.method, &ctx.headers, date_line, &resource);
    if sign::signatures_equal(&sign::v1_signature(secret, &sts), sig) {
        Ok(Principal::Root)
    } else {
        Err(mismatch(sts, ak))
    }
}

fn v1_presigned(ctx: &Ctx, creds: &Credentials) -> Result<Principal> {
    let ak = ctx.query_raw("OSSAccessKeyId").unwrap_or("");
    let sig = ctx.query_raw("Signature").unwrap_or("");
    let expires = ctx.query_raw("Expires").unwrap_or("");
    let secret = secret_for(creds, ak)?;
    let exp: u64 = expires
        .parse()
        .map_err(|_| access_denied("Expires is not a valid time."))?;
    if now_secs() > exp {
        return Err(access_denied("Request has expired."));
    }
    let resource = sign::v1_canonical_resource(ctx.bucket.as_deref(), ctx.key.as_deref(), &ctx.query);
    let sts = sign::v1_string_to_sign(&ctx.method, &ctx.headers, expires, &resource);
    if sign::signatures_equal(&sign::v1_signature(secret, &sts), sig) {
        Ok(Principal::Root)
    } else {
        Err(mismatch(sts, ak))
    }
}

/// Checks a V4 signature; tries once more without empty-valued headers, which the C++ SDK
/// leaves out of its canonical request. Returns whether that second form matched (the empty
/// headers are then not covered by the signature).
#[allow(clippy::too_many_arguments)]
fn verify_v4(
    ctx: &Ctx,
    secret: &str,
    ak: &str,
    date: &str,
    region: &str,
    product: &str,
    timestamp: &str,
    additional: &[String],
    hashed_payload: &str,
    signature: &str,
) -> Result<bool> {
    if product != "oss" {
        return Err(access_denied("The credential scope must name the oss product."));
    }
    if !timestamp.starts_with(date) {
        return Err(access_denied("The credential date does not match the request time."));
    }
    let uri = sign::v4_canonical_uri(ctx.bucket.as_deref(), ctx.key.as_deref());
    let query = sign::v4_canonical_query(&ctx.query);
    let scope = sign::v4_scope(date, region, product);
    let mut first_sts = None;
    for drop_empty in [false, true] {
        let cr = sign::v4_canonical_request(
            &ctx.method,
            &uri,
            &query,
            &ctx.headers,
            additional,
            hashed_payload,
            drop_empty,
        );
        let sts = sign::v4_string_to_sign(timestamp, &scope, &cr);
        if sign::signatures_equal(&sign::v4_signature(secret, date, region, product, &sts), signature) {
            return Ok(drop_empty
                && ctx
                    .headers
                    .iter()
                    .any(|(n, v)| n.starts_with("x-oss-") && v.trim().is_empty()));
        }
        first_sts.get_or_insert(sts);
    }
    Err(mismatch(first_sts.unwrap_or_default(), ak))
}

/// A presigned URL's validity in seconds: a positive whole number up to 7 days. Zero or a
/// negative number can never be valid (403); more than 7 days, or not a number, is a
/// malformed URL (400 with `malformed`, the dialect's code).
pub fn presign_expiry(raw: Option<&str>, name: &str, malformed: Code) -> Result<u64> {
    let raw = raw.map(str::trim).unwrap_or("");
    match raw.parse::<i64>() {
        Ok(v) if v <= 0 => Err(access_denied("Request has expired.")),
        Ok(v) if v as u64 <= MAX_PRESIGN_SECS => Ok(v as u64),
        Ok(_) => Err(Error::msg(
            malformed,
            format!("{name} must be less than a week (in seconds) that is 604800"),
        )),
        Err(_) => Err(Error::msg(malformed, format!("{name} should be a number"))),
    }
}

fn v4_time(raw: &str) -> Option<u64> {
    timefmt::parse_iso8601_basic(raw).or_else(|| timefmt::parse_http_date(raw))
}

fn v4_header(ctx: &Ctx, creds: &Credentials, auth: &str) -> Result<bool> {
    let a = sign::parse_v4_authorization(auth)
        .ok_or_else(|| access_denied("The OSS4-HMAC-SHA256 Authorization header is malformed."))?;
    let secret = secret_for(creds, &a.access_key_id)?;
    let timestamp = ctx
        .header("x-oss-date")
        .or_else(|| ctx.header("date"))
        .ok_or_else(|| access_denied("The request does not contain a valid x-oss-date or Date header."))?;
    let t = v4_time(timestamp)
        .ok_or_else(|| access_denied("The request does not contain a valid x-oss-date or Date header."))?;
    check_skew(t)?;
    let payload = ctx.header("x-oss-content-sha256").unwrap_or("UNSIGNED-PAYLOAD");
    verify_v4(
        ctx,
        secret,
        &a.access_key_id,
        &a.date,
        &a.region,
        &a.product,
        timestamp,
        &a.additional_headers,
        payload,
        &a.signature,
    )
}

fn v4_presigned(ctx: &Ctx, creds: &Credentials) -> Result<bool> {
    if ctx.query_raw("x-oss-signature-version") != Some("OSS4-HMAC-SHA256") {
        return Err(access_denied("x-oss-signature-version must be OSS4-HMAC-SHA256."));
    }
    let credential = ctx.query_raw("x-oss-credential").unwrap_or("");
    let (ak, date, region, product) =
        sign::parse_v4_credential(credential).ok_or_else(|| access_denied("x-oss-credential is malformed."))?;
    let secret = secret_for(creds, &ak)?;
    let timestamp = ctx.query_raw("x-oss-date").unwrap_or("");
    let t = timefmt::parse_iso8601_basic(timestamp).ok_or_else(|| access_denied("x-oss-date is malformed."))?;
    if !timestamp.starts_with(&date) {
        return Err(access_denied("x-oss-date does not match the credential date."));
    }
    let expires = presign_expiry(ctx.query_raw("x-oss-expires"), "x-oss-expires", Code::InvalidArgument)?;
    let now = now_secs();
    if now + MAX_SKEW_SECS < t {
        return Err(skewed());
    }
    if now > t + expires {
        return Err(access_denied("Request has expired."));
    }
    let additional = sign::parse_additional_headers(ctx.query_raw("x-oss-additional-headers").unwrap_or(""));
    let signature = ctx.query_raw("x-oss-signature").unwrap_or("");
    verify_v4(
        ctx,
        secret,
        &ak,
        &date,
        &region,
        &product,
        timestamp,
        &additional,
        "UNSIGNED-PAYLOAD",
        signature,
    )
}
