//! Rendering in the OSS dialect: XML bodies without xmlns, errors with request ids and EC,
//! HEAD errors in `x-oss-err`.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use kura_core::{Code, Error};
use kura_proto::xml::{self, xml_safe_opt, ErrorBody};
use serde::Serialize;

use crate::request::Ctx;
pub use crate::response::{empty, set, set_dynamic, Resp, RespBody};

pub fn xml<T: Serialize>(value: &T) -> Resp {
    let body = xml::to_xml(value);
    let mut r = Response::new(RespBody::Full(Some(Bytes::from(body))));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/xml"));
    r
}

/// OSS's error code (EC) for the errors whose EC oss-api.md records from real OSS; the SDKs
/// surface it (pyv2, gov2, ali-oss) and fall back to nothing when it is absent.
fn error_ec(e: &Error, ctx: Option<&Ctx>) -> Option<&'static str> {
    if let Some(ec) = e.detail.as_ref().and_then(|d| d.ec) {
        return Some(ec);
    }
    let op = ctx.map(|c| {
        (
            c.method.as_str(),
            c.has_query("partNumber"),
            c.header("x-oss-copy-source").is_some(),
        )
    });
    Some(match e.code {
        Code::InvalidAccessKeyId => "0002-00000902",
        Code::NoSuchBucket => "0015-00000101",
        Code::BucketAlreadyExists => "0015-00000104",
        Code::MalformedXML => "0015-00000231",
        Code::NoSuchKey => "0026-00000001",
        Code::NoSuchUpload => match op {
            Some(("DELETE", _, _)) => "0042-00000002",
            Some(("PUT", true, true)) => "0042-00000311",
            _ => "0042-00000104",
        },
        Code::InvalidPartOrder => "0042-00000209",
        Code::EntityTooSmall => "0042-00000213",
        Code::FileAlreadyExists if matches!(op, Some(("POST", _, _))) => "0042-00000214",
        Code::InvalidArgument if e.message.starts_with("Should not speficy both") => "0042-00000216",
        Code::InvalidArgument if e.message.starts_with("Part number must be") => "0017-00000220",
        _ => return None,
    })
}

pub fn error(e: &Error, request_id: &str, ctx: Option<&Ctx>, host: &str, is_head: bool) -> Resp {
    if e.code == Code::NotModified {
        let mut r = empty(304);
        if let Some((etag, _, modified)) = e.detail.as_ref().and_then(|d| d.not_modified.as_ref()) {
            set(&mut r, "etag", etag);
            set(&mut r, "last-modified", modified);
        }
        return r;
    }
    let d = e.detail();
    let body = ErrorBody {
        code: e.code.as_str().to_string(),
        message: xml::xml_text(&e.message),
        request_id: request_id.to_string(),
        host_id: xml_safe_opt(Some(host.to_string())).unwrap_or_default(),
        bucket_name: xml_safe_opt(d.bucket.clone().or_else(|| {
            matches!(e.code, Code::NoSuchBucket | Code::BucketNotEmpty)
                .then(|| ctx.and_then(|c| c.bucket.clone()))
                .flatten()
        })),
        // A key with control characters cannot travel in XML; it is left out.
        key: d
            .key
            .clone()
            .or_else(|| {
                matches!(e.code, Code::NoSuchKey)
                    .then(|| ctx.and_then(|c| c.key.clone()))
                    .flatten()
            })
            .filter(|k| kura_proto::xml::xml_safe(k) && !k.chars().any(char::is_control)),
        upload_id: xml_safe_opt(d.upload_id.clone()),
        argument_name: xml_safe_opt(d.argument.as_ref().map(|a| a.0.clone())),
        argument_value: xml_safe_opt(d.argument.as_ref().map(|a| a.1.clone())),
        server_time: d.server_time.clone(),
        string_to_sign: xml_safe_opt(d.string_to_sign.clone()),
        oss_access_key_id: xml_safe_opt(d.access_key_id.clone()),
        ec: error_ec(e, ctx).map(str::to_string),
    };
    let status = e.code.status();
    let mut r = if is_head {
        let mut r = empty(status);
        let encoded = base64::engine::general_purpose::STANDARD.encode(xml::to_xml(&body));
        set(&mut r, "x-oss-err", encoded);
        r
    } else {
        let mut r = xml(&body);
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        r
    };
    if let Some(ec) = &body.ec {
        set(&mut r, "x-oss-ec", ec);
    }
    r
}
