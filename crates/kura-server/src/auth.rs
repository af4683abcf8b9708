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

pub fn authenticate(ctx: &Ctx, creds: &Credentials) -> Result<Principal> {
    if let Some(auth) = ctx.header("authorization") {
        if let Some(rest) = auth.strip_prefix("OSS ") {
            return v1_header(ctx, creds, rest);
        }
        if auth.starts_with("OSS4-HMAC-SHA256") {
            return v4_header(ctx, creds, auth);
        }
        return Err(access_denied(
            "The authorization scheme is not supported; use OSS or OSS4-HMAC-SHA256.",
        ));
    }
    if ctx.query_raw("x-oss-signature-version").is_some() || ctx.query_raw("x-oss-signature").is_some() {
        return v4_presigned(ctx, creds);
    }
    if ctx.query_raw("OSSAccessKeyId").is_some() || ctx.query_raw("Signature").is_some() {
        return v1_presigned(ctx, creds);
    }
    Ok(Principal::Anonymous)
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
/// leaves out of its canonical request.
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
) -> Result<Principal> {
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
            return Ok(Principal::Root);
        }
        first_sts.get_or_insert(sts);
    }
    Err(mismatch(first_sts.unwrap_or_default(), ak))
}

fn v4_time(raw: &str) -> Option<u64> {
    timefmt::parse_iso8601_basic(raw).or_else(|| timefmt::parse_http_date(raw))
}

fn v4_header(ctx: &Ctx, creds: &Credentials, auth: &str) -> Result<Principal> {
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

fn v4_presigned(ctx: &Ctx, creds: &Credentials) -> Result<Principal> {
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
    let expires: u64 = ctx
        .query_raw("x-oss-expires")
        .and_then(|v| v.parse().ok())
        .filter(|v| (1..=MAX_PRESIGN_SECS).contains(v))
        .ok_or_else(|| access_denied("x-oss-expires must be between 1 and 604800 seconds."))?;
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
