//! S3 authentication: AWS Signature V4 and V2: the Authorization header and presigned URLs. The same
//! access keys as the OSS dialect. Returns who is asking and how the body is protected.

use kura_core::{Code, Error, Result};
use kura_proto::{sigv4, timefmt};

use super::{presign_expiry, Authenticated, ChunkSigning, Credentials, Payload, Principal, MAX_SKEW_SECS};
use crate::request::Ctx;

fn now_secs() -> u64 {
    timefmt::now_millis() / 1000
}

fn denied(msg: &str) -> Error {
    Error::msg(Code::AccessDenied, msg)
}

fn secret_for<'a>(creds: &'a Credentials, ak: &str) -> Result<&'a str> {
    if ak == creds.access_key_id {
        Ok(&creds.access_key_secret)
    } else {
        Err(Error::msg(
            Code::InvalidAccessKeyId,
            "The AWS Access Key Id you provided does not exist in our records.",
        )
        .with(|d| d.access_key_id = Some(ak.to_string())))
    }
}

fn mismatch(sts: String, ak: &str) -> Error {
    Error::new(Code::SignatureDoesNotMatch).with(|d| {
        d.string_to_sign = Some(sts);
        d.access_key_id = Some(ak.to_string());
    })
}

/// Every `x-amz-*` header acts (copy sources, ACLs, checksums, conditions), so a SigV4
/// signature must cover each one present; otherwise anyone holding a presigned URL could add
/// headers that change what the request does. (Signature V2 signs them all by construction.)
fn check_all_signed(ctx: &Ctx, signed: &[String]) -> Result<()> {
    let mut missing: Vec<&str> = ctx
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("x-amz-") && !signed.iter().any(|s| s == n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    missing.dedup();
    let list = missing.join(", ");
    Err(Error::msg(
        Code::AccessDenied,
        "There were headers present in the request which were not signed",
    )
    .with(|d| d.headers_not_signed = Some(list)))
}

pub fn authenticate(ctx: &Ctx, creds: &Credentials) -> Result<Authenticated> {
    if let Some(auth) = ctx.header("authorization") {
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return v2_header(ctx, creds, rest).map(|_| Authenticated::root(Payload::Unsigned));
        }
        if !auth.starts_with("AWS4-HMAC-SHA256 ") {
            return Err(denied(
                "The authorization scheme is not supported; use AWS4-HMAC-SHA256 or AWS.",
            ));
        }
        return header_auth(ctx, creds, auth).map(|(_, payload)| Authenticated::root(payload));
    }
    if ctx.query_raw("X-Amz-Algorithm").is_some() || ctx.query_raw("X-Amz-Signature").is_some() {
        return presigned(ctx, creds).map(|_| Authenticated::root(Payload::Unsigned));
    }
    if ctx.query_raw("AWSAccessKeyId").is_some() {
        return v2_presigned(ctx, creds).map(|_| Authenticated::root(Payload::Unsigned));
    }
    let payload = match ctx.header("x-amz-content-sha256") {
        Some(v) if v.starts_with("STREAMING-UNSIGNED-PAYLOAD") => Payload::Chunked {
            signing: None,
            trailer: true,
        },
        _ => Payload::Unsigned,
    };
    Ok(Authenticated::anonymous(payload))
}

/// Signature Version 2 (what boto3 still uses for presigned URLs by default): the OSS V1
/// scheme with `x-amz-*` headers.
fn v2_check(ctx: &Ctx, secret: &str, ak: &str, date_line: &str, signature: &str) -> Result<Principal> {
    // Signature V2 signs only the sub-resources it knew of; a newer selector would ride along
    // unsigned and change the operation.
    if ctx.has_query("attributes") {
        return Err(denied("GetObjectAttributes needs Signature Version 4."));
    }
    use kura_proto::sign;
    let resource = sign::v1_canonical_resource(ctx.bucket.as_deref(), ctx.key.as_deref(), &ctx.query);
    let sts = sign::s3v2_string_to_sign(&ctx.method, &ctx.headers, date_line, &resource);
    if sign::signatures_equal(&sign::v1_signature(secret, &sts), signature) {
        Ok(Principal::Root)
    } else {
        Err(mismatch(sts, ak))
    }
}

fn v2_header(ctx: &Ctx, creds: &Credentials, rest: &str) -> Result<Principal> {
    let (ak, sig) = rest
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| denied("The Authorization header is malformed."))?;
    let secret = secret_for(creds, ak)?;
    // With x-amz-date the Date line is empty and x-amz-date is signed among the headers.
    let (date_line, raw) = match ctx.header("x-amz-date") {
        Some(d) => ("", d),
        None => {
            let d = ctx.header("date").unwrap_or("");
            (d, d)
        }
    };
    let t = timefmt::parse_http_date(raw)
        .ok_or_else(|| denied("AWS authentication requires a valid Date or x-amz-date header."))?;
    if now_secs().abs_diff(t) > MAX_SKEW_SECS {
        return Err(Error::new(Code::RequestTimeTooSkewed)
            .with(|d| d.server_time = Some(timefmt::iso8601(timefmt::now_millis()))));
    }
    v2_check(ctx, secret, ak, date_line, sig)
}

fn v2_presigned(ctx: &Ctx, creds: &Credentials) -> Result<Principal> {
    let ak = ctx.query_raw("AWSAccessKeyId").unwrap_or("");
    let secret = secret_for(creds, ak)?;
    let expires = ctx.query_raw("Expires").unwrap_or("");
    let exp: u64 = expires.parse().map_err(|_| denied("Expires is not a valid time."))?;
    if now_secs() > exp {
        return Err(denied("Request has expired"));
    }
    v2_check(ctx, secret, ak, expires, ctx.query_raw("Signature").unwrap_or(""))
}

fn header_auth(ctx: &Ctx, creds: &Credentials, auth: &str) -> Result<(Principal, Payload)> {
    let a = sigv4::parse_authorization(auth)
        .ok_or_else(|| denied("The AWS4-HMAC-SHA256 Authorization header is malformed."))?;
    check_scope(&a.service).map_err(|e| Error::msg(Code::AccessDenied, e.message))?;
    require_host(&a.signed_headers)?;
    let secret = secret_for(creds, &a.access_key_id)?;
    let timestamp = ctx
        .header("x-amz-date")
        .or_else(|| ctx.header("date"))
        .ok_or_else(|| denied("AWS authentication requires a valid Date or x-amz-date header."))?;
    let t = timefmt::parse_iso8601_basic(timestamp)
        .or_else(|| timefmt::parse_http_date(timestamp))
        .ok_or_else(|| denied("AWS authentication requires a valid Date or x-amz-date header."))?;
    if now_secs().abs_diff(t) > MAX_SKEW_SECS {
        return Err(Error::new(Code::RequestTimeTooSkewed)
            .with(|d| d.server_time = Some(timefmt::iso8601(timefmt::now_millis()))));
    }
    if !timestamp.starts_with(&a.date) {
        return Err(denied("The credential date does not match the date of the request."));
    }
    let content_sha = ctx.header("x-amz-content-sha256").ok_or_else(|| {
        Error::msg(
            Code::InvalidRequest,
            "Missing required header for this request: x-amz-content-sha256",
        )
    })?;
    let payload = match content_sha {
        "UNSIGNED-PAYLOAD" => Payload::Unsigned,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Payload::Chunked {
            signing: None,
            trailer: true,
        },
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" | "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Payload::Chunked {
            signing: Some(ChunkSigning {
                key: [0; 32],
                timestamp: String::new(),
                scope: String::new(),
                seed: String::new(),
            }),
            trailer: content_sha.ends_with("TRAILER"),
        },
        h if h.len() == 64 => Payload::Sha256(
            hex::decode(h).map_err(|_| Error::msg(Code::InvalidArgument, "x-amz-content-sha256 is not a SHA-256."))?,
        ),
        _ => {
            return Err(Error::msg(
                Code::InvalidArgument,
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-*, or a SHA-256.",
            ))
        }
    };
    let cr = sigv4::canonical_request(
        &ctx.method,
        &sigv4::canonical_uri(&ctx.path),
        &sigv4::canonical_query(&ctx.query),
        &ctx.headers,
        &a.signed_headers,
        content_sha,
    )
    .ok_or_else(|| denied("A header named in SignedHeaders is missing."))?;
    let scope = sigv4::scope(&a.date, &a.region, &a.service);
    let sts = sigv4::string_to_sign(timestamp, &scope, &cr);
    let key = sigv4::signing_key(secret, &a.date, &a.region, &a.service);
    let signature = sigv4::sign(&key, &sts);
    if !kura_proto::sign::signatures_equal(&signature, &a.signature) {
        return Err(mismatch(sts, &a.access_key_id));
    }
    check_all_signed(ctx, &a.signed_headers)?;
    let payload = match payload {
        Payload::Chunked {
            signing: Some(_),
            trailer,
        } => Payload::Chunked {
            signing: Some(ChunkSigning {
                key,
                timestamp: timestamp.to_string(),
                scope,
                seed: signature,
            }),
            trailer,
        },
        p => p,
    };
    Ok((Principal::Root, payload))
}

fn presigned(ctx: &Ctx, creds: &Credentials) -> Result<Principal> {
    if ctx.query_raw("X-Amz-Algorithm") != Some(sigv4::ALGORITHM) {
        return Err(denied("X-Amz-Algorithm must be AWS4-HMAC-SHA256."));
    }
    let credential = ctx.query_raw("X-Amz-Credential").unwrap_or("");
    let query_error = |m: &str| Error::msg(Code::AuthorizationQueryParametersError, m);
    let (ak, date, region, service) =
        sigv4::parse_credential(credential).ok_or_else(|| query_error("X-Amz-Credential is malformed."))?;
    check_scope(&service)?;
    let secret = secret_for(creds, &ak)?;
    let timestamp = ctx.query_raw("X-Amz-Date").unwrap_or("");
    let t = timefmt::parse_iso8601_basic(timestamp)
        .ok_or_else(|| query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""))?;
    if !timestamp.starts_with(&date) {
        return Err(query_error("The credential date does not match X-Amz-Date."));
    }
    let expires = presign_expiry(
        ctx.query_raw("X-Amz-Expires"),
        "X-Amz-Expires",
        Code::AuthorizationQueryParametersError,
    )?;
    let now = now_secs();
    if now + MAX_SKEW_SECS < t {
        return Err(denied("Request is not valid yet."));
    }
    if now > t + expires {
        return Err(denied("Request has expired"));
    }
    let signed: Vec<String> = ctx
        .query_raw("X-Amz-SignedHeaders")
        .unwrap_or("host")
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    require_host(&signed)?;
    let cr = sigv4::canonical_request(
        &ctx.method,
        &sigv4::canonical_uri(&ctx.path),
        &sigv4::canonical_query(&ctx.query),
        &ctx.headers,
        &signed,
        "UNSIGNED-PAYLOAD",
    )
    .ok_or_else(|| denied("A header named in X-Amz-SignedHeaders is missing."))?;
    let scope = sigv4::scope(&date, &region, &service);
    let sts = sigv4::string_to_sign(timestamp, &scope, &cr);
    let key = sigv4::signing_key(secret, &date, &region, &service);
    if !kura_proto::sign::signatures_equal(&sigv4::sign(&key, &sts), ctx.query_raw("X-Amz-Signature").unwrap_or("")) {
        return Err(mismatch(sts, &ak));
    }
    check_all_signed(ctx, &signed)?;
    Ok(Principal::Root)
}

/// With virtual-host addressing the bucket is in Host, not in the signed path: a signature
/// that leaves Host out would be good for every bucket. AWS requires it signed.
fn require_host(signed: &[String]) -> Result<()> {
    if signed.iter().any(|h| h == "host") {
        Ok(())
    } else {
        Err(denied("The host header must be signed."))
    }
}

/// The credential scope's service must be `s3`: a signature made for another service is not
/// one for this request.
fn check_scope(service: &str) -> Result<()> {
    if service == "s3" {
        Ok(())
    } else {
        Err(Error::msg(
            Code::AuthorizationQueryParametersError,
            format!("The credential scope names the service {service}; this is s3."),
        ))
    }
}
