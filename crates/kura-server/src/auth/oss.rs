//! OSS authentication: V1 and V4, in the Authorization header or as presigned URLs.

use kura_core::{Code, Error, Result};
use kura_proto::{sign, timefmt};

use super::{access_denied, now_secs, presign_expiry, Authenticated, Credentials, Payload, Principal, MAX_SKEW_SECS};
use crate::request::Ctx;

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
