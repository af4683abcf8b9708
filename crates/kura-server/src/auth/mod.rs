//! Authentication: who is asking, and what their signature covers. OSS V1 and V4 (header
//! and presigned) in [`oss`]; AWS SigV4 and V2 (header and presigned) in [`s3`]; the signed
//! aws-chunked body framing in [`chunked`]. Authorization (the permission table) comes after
//! classification, in `authz`.

pub mod chunked;
pub mod oss;
pub mod s3;

use kura_core::{Code, Error, Result};

use crate::op::Dialect;
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

#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
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

/// Authenticates a request in its dialect.
pub fn authenticate(dialect: Dialect, ctx: &Ctx, creds: &Credentials) -> Result<Authenticated> {
    match dialect {
        Dialect::Oss => oss::authenticate(ctx, creds),
        Dialect::S3 => s3::authenticate(ctx, creds),
    }
}

pub(crate) fn now_secs() -> u64 {
    kura_proto::timefmt::now_millis() / 1000
}

pub(crate) fn access_denied(msg: &str) -> Error {
    Error::msg(Code::AccessDenied, msg)
}
